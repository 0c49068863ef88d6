"""vaultctl serve: run the gRPC server, in this process or as several worker processes.

Contract: every file the server writes is private (umask 077); logging is configured from the
configuration before the server starts; with more than one process, this process supervises the
workers (:mod:`vault_service.rpc.workers`), each of which runs ``vaultctl serve --worker``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.cli.common import Output, config_of, configure_logging
from vault_service.errors import ConfigError


def cmd_serve(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.rpc.server import serve
    from vault_service.rpc.sizing import process_count

    config = config_of(args, env)
    os.umask(0o077)  # every file the server writes (logs, database, blobs) is private
    configure_logging(config)
    if args.workers < 0:
        raise ConfigError("--workers must be >= 1")
    processes = process_count(config, args.workers)
    if processes > 1 and not args.worker:
        from vault_service.rpc.workers import serve_workers

        return serve_workers(config, Path(args.config), env, processes)
    return serve(config, env, worker=args.worker)


def add_parser(sub: Any) -> None:
    """vaultctl serve"""
    serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="server processes sharing the port (SO_REUSEPORT); default: server.processes, or "
        "when that is 0, 1 on SQLite and one per usable CPU (at most 8) on PostgreSQL",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(fn=cmd_serve)
