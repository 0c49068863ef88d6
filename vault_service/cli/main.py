"""vaultctl: the operator CLI. Thin: parses arguments, calls the service or the client, prints.

Every command takes ``--json`` for machine-readable output. Exit codes: 0 ok, 1 the operation
failed (the message is the public error text, with its status), 2 bad usage or configuration.

Each command group is one module holding its parser beside its handlers: :mod:`.keys`,
:mod:`.audit`, :mod:`.breach` (the breach scope), :mod:`.consent`, :mod:`.subjects`,
:mod:`.shares`, :mod:`.records`, :mod:`.lifecycle` (retention, dormancy, holds, blobs),
:mod:`.verification` (deletion verification, certificates, the compliance report) and
:mod:`.serve`; :mod:`.common` holds what they share. This module builds the top-level parser,
registers each group (``add_parser``), and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from vault_service.cli import (
    audit,
    breach,
    consent,
    dev,
    keys,
    lifecycle,
    offline,
    principals,
    records,
    serve,
    shares,
    subjects,
    verification,
    witness,
)
from vault_service.cli.common import Output
from vault_service.errors import ConfigError, Status, VaultError

DEFAULT_CONFIG = "config/dev.toml"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    p = argparse.ArgumentParser(prog="vaultctl", description="Operate vault-service.")
    p.add_argument(
        "--config",
        default=os.environ.get("VAULT_CONFIG", DEFAULT_CONFIG),
        help=f"config file (default: $VAULT_CONFIG or {DEFAULT_CONFIG})",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)
    # registered in the order `vaultctl --help` lists them
    groups = (
        serve,
        keys,
        audit,
        witness,
        breach,
        consent,
        subjects,
        shares,
        lifecycle,
        verification,
        records,
    )
    for group in (*groups, principals, dev, offline):
        group.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of ``vaultctl``."""
    args = build_parser().parse_args(argv)
    out = Output(args.json)
    try:
        code: int = args.fn(args, os.environ if env is None else env, out)
        return code
    except ConfigError as exc:
        out.error("CONFIG", str(exc))
        return 2
    except VaultError as exc:
        out.error(exc.status.value, exc.public_message)
        return 1
    except OSError as exc:
        out.error(Status.UNAVAILABLE.value, f"{type(exc).__name__}: {exc.strerror or exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
