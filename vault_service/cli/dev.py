"""vaultctl dev: rehearsal time for a development vault (``server.dev_clock_file``, loopback only).

Contract: ``dev clock`` prints the vault's time and the offset; ``dev advance`` moves the offset
forward (``--days``, ``--hours``, ``--seconds``; never back), seen at once by every process of the
deployment, the running server included. Both refuse (exit 2) a config without
``server.dev_clock_file`` or one that listens beyond loopback.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Mapping
from typing import Any

from vault_service.cli.common import Output, config_of
from vault_service.clock import RehearsalClock, advance_offset
from vault_service.config import Config
from vault_service.errors import ConfigError


def _clock(config: Config) -> RehearsalClock:
    from vault_service.app import clock_for

    clock = clock_for(config)
    if not isinstance(clock, RehearsalClock):
        raise ConfigError(
            "server.dev_clock_file is not set: rehearsal time is for a development vault on"
            " loopback (config/dev.toml has it)"
        )
    return clock


def _show(clock: RehearsalClock, out: Output, verb: str) -> int:
    offset, now = clock.offset(), clock.now()
    when = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.emit(
        {"offset_seconds": offset, "now": now, "clock_file": str(clock.path)},
        f"{verb}vault time {when} ({offset / 86400:g} days ahead of the real clock)",
    )
    return 0


def cmd_dev_clock(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    return _show(_clock(config_of(args, env)), out, "")


def cmd_dev_advance(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    clock = _clock(config_of(args, env))
    advance_offset(clock.path, args.days * 86400 + args.hours * 3600 + args.seconds)
    return _show(clock, out, "advanced: ")


def add_parser(sub: Any) -> None:
    """vaultctl dev ..."""
    dev = sub.add_parser("dev", help="rehearsal time for a development vault").add_subparsers(
        dest="dev_cmd", required=True
    )
    dev.add_parser("clock", help="the vault's time and its offset").set_defaults(fn=cmd_dev_clock)
    advance = dev.add_parser("advance", help="move the vault's clock forward")
    advance.add_argument("--days", type=float, default=0.0)
    advance.add_argument("--hours", type=float, default=0.0)
    advance.add_argument("--seconds", type=float, default=0.0)
    advance.set_defaults(fn=cmd_dev_advance)
