"""What the command groups of vaultctl share: output, configuration, and the way to the vault.

Contract: :class:`Output` prints a command's result as text or (``--json``) as one JSON object, and
errors to stderr; :func:`config_of` loads the configuration a command names; :func:`store_of`,
:func:`provider_of` and :func:`assembly_of` open the vault's parts in-process (operator jobs), while
:func:`client_of` reaches a running server over gRPC with a bearer token, whose flags
:func:`add_client_args` adds. Everything heavy (the service, the client, the key providers) is
imported inside the function that needs it: the CLI starts fast, and each command loads only its
own dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.config import Config, load_config
from vault_service.errors import ConfigError


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, data: Mapping[str, Any], text: str) -> None:
        print(json.dumps(data, sort_keys=True) if self.as_json else text)

    def error(self, status: str, message: str) -> None:
        if self.as_json:
            print(json.dumps({"error": {"status": status, "message": message}}), file=sys.stderr)
        else:
            print(f"error ({status}): {message}", file=sys.stderr)


def config_of(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    return load_config(Path(args.config), env)


def provider_of(config: Config, env: Mapping[str, str]) -> Any:
    from vault_service.app import open_provider

    return open_provider(config, env)


def clock_of(config: Config) -> Any:
    """The vault's clock (the rehearsal clock in development, see ``server.dev_clock_file``)."""
    from vault_service.app import clock_for

    return clock_for(config)


def store_of(config: Config, provider: Any) -> Any:
    """The store, with its audit entries MACed under the service's key (``provider`` unwraps
    it): a command that writes audit entries must MAC them as the server does."""
    from vault_service.app import clock_for, open_audited_store

    return open_audited_store(config, provider, clock_for(config))


def assembly_of(config: Config, env: Mapping[str, str]) -> Any:
    from vault_service.app import build_service

    return build_service(config, env)


def configure_logging(config: Config) -> None:
    """Log as the server does (level, format, file from the config): operator jobs that raise
    security events (audit verification, deletion verification) reach the same log pipeline."""
    from vault_service import logs

    logs.configure(
        config.logging.level,
        config.logging.format,
        config.path(config.logging.file) if config.logging.file else None,
    )


#: where the gRPC commands go when neither --address nor a config file says
DEFAULT_ADDRESS = "127.0.0.1:50051"


def connect_address(listen: str) -> str:
    """The address a client on this machine dials for a server listening on ``listen``: a
    wildcard host (``0.0.0.0``, ``[::]``) is reached on loopback."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0"):  # noqa: S104 - a wildcard listen address, dialled on loopback
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    return f"{host}:{port}"


def address_of(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    """``--address``; else the ``server.listen`` of the config file (``--config``) when it
    exists and is a loopback address (these commands speak plaintext gRPC: a bearer token never
    leaves the machine unasked); else :data:`DEFAULT_ADDRESS`."""
    from vault_service.app import is_loopback

    if args.address:
        return str(args.address)
    path = Path(args.config)
    if not path.is_file():
        return DEFAULT_ADDRESS
    config = load_config(path, env)
    listen = config.server.listen
    if listen.endswith(":0"):
        raise ConfigError(f"{path}: server.listen picks a free port at start-up: pass --address")
    if not is_loopback(connect_address(listen)) or config.tls.cert_file:
        raise ConfigError(
            f"{path}: server.listen is not a plaintext loopback address; vaultctl's gRPC commands"
            " send the token in plaintext: pass --address explicitly"
        )
    return connect_address(listen)


def client_of(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from vault_service.client import VaultClient

    token = env.get("VAULT_SERVICE_TOKEN", "")
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        raise ConfigError("no token: set VAULT_SERVICE_TOKEN or pass --token-file")
    return VaultClient(address_of(args, env), token, timeout=args.timeout)


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default="",
        help=f"host:port of the server (default: server.listen of --config, else {DEFAULT_ADDRESS})",
    )
    p.add_argument("--token-file", help="file holding the bearer token (else $VAULT_SERVICE_TOKEN)")
    p.add_argument("--timeout", type=float, default=10.0)


class ExportFile:
    """The subject-access export format of ``vaultctl subject export`` and ``vaultctl offline
    decrypt``: one JSON object per record and line, in a file created private (0600)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "w")

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def write(self, meta: Any, fields: Mapping[str, str], content: bytes | None) -> None:
        """One record; ``meta`` has the record's id, category, version, times and content type."""
        import base64

        line: dict[str, Any] = {
            "record_id": meta.record_id,
            "category": meta.category,
            "version": meta.version,
            "created_at": meta.created_at,
            "updated_at": meta.updated_at,
            "content_type": meta.content_type,
            "fields": dict(fields),
        }
        if content is not None:
            line["content_base64"] = base64.b64encode(content).decode()
        self._file.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
        self.count += 1


def fmt_time(ts: float | None) -> str:
    import datetime

    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
