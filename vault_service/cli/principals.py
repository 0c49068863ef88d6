"""vaultctl principal: add an authenticated caller to the policy file, with a fresh bearer token.

Contract: ``principal add NAME --role ROLE`` appends a ``[principals.NAME]`` table to the policy
file the config names (or ``--policy``), with the SHA-256 of a new random token; the token itself
is printed once and stored nowhere. The role must exist and the name must be new and valid; the
file is checked by loading it as the server would before it replaces the old one (atomically:
written beside it, then renamed), so a failed command leaves the policy as it was. The server
reads its policy at start-up: restart it (or each replica) for the principal to be known.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.cli.common import Output, config_of
from vault_service.errors import ConfigError
from vault_service.policy import load_policy
from vault_service.policy.loader import check_name
from vault_service.policy.model import token_digest

#: random bytes of a new token (printed as URL-safe base64: 43 characters)
TOKEN_BYTES = 32


def _policy_path(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    if args.policy:
        return Path(args.policy)
    return config_of(args, env).policy_path


def cmd_principal_add(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.app import DEV_PRINCIPAL

    path = _policy_path(args, env)
    check_name(args.name, "principal", str(path))
    if args.name == DEV_PRINCIPAL:  # the development token's principal overrides it
        raise ConfigError(f"{path}: the principal name {DEV_PRINCIPAL!r} is reserved")
    text = path.read_text()
    policy = load_policy(text, str(path))
    if args.name in policy.principals:
        raise ConfigError(f"{path}: principal {args.name[:64]!r} exists already")
    if args.role not in policy.roles:
        known = ", ".join(sorted(policy.roles))
        raise ConfigError(f"{path}: no role {args.role[:64]!r} (roles: {known})")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    table = (
        f'\n[principals."{args.name}"]\n'  # quoted: a name may hold dots
        f'role = "{args.role}"\n'
        f'token_sha256 = "{token_digest(token).hex()}"\n'
    )
    updated = text + ("" if text.endswith("\n") else "\n") + table
    load_policy(updated, str(path))  # as the server will read it; the file is unchanged on error
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staged.write_text(updated)
        os.chmod(staged, path.stat().st_mode & 0o777)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    out.emit(
        {"principal": args.name, "role": args.role, "token": token, "policy": str(path)},
        f"added principal {args.name} (role {args.role}) to {path}\n"
        f"token (shown once, stored only as its SHA-256): {token}\n"
        "restart the server for it to take effect",
    )
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl principal ..."""
    principal = sub.add_parser("principal", help="authenticated callers in the policy").add_subparsers(
        dest="principal_cmd", required=True
    )
    add = principal.add_parser("add", help="add a principal with a fresh bearer token")
    add.add_argument("name", help="lower-case letters, digits, _ - and . (at most 64)")
    add.add_argument("--role", required=True, help="a role the policy declares")
    add.add_argument("--policy", help="policy file (default: the one --config names)")
    add.set_defaults(fn=cmd_principal_add)
