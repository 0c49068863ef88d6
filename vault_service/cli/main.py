"""vaultctl: the operator CLI. Thin: parses arguments, calls the service or the client, prints.

Every command takes ``--json`` for machine-readable output. Exit codes: 0 ok, 1 the operation
failed (the message is the public error text, with its status), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vault_service.clock import SystemClock
from vault_service.config import Config, load_config
from vault_service.errors import ConfigError, Status, VaultError

DEFAULT_CONFIG = "config/dev.toml"


class _Out:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, data: Mapping[str, Any], text: str) -> None:
        print(json.dumps(data, sort_keys=True) if self.as_json else text)

    def error(self, status: str, message: str) -> None:
        if self.as_json:
            print(json.dumps({"error": {"status": status, "message": message}}), file=sys.stderr)
        else:
            print(f"error ({status}): {message}", file=sys.stderr)


def _config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    return load_config(Path(args.config), env)


# keys ---------------------------------------------------------------------------------------------
def cmd_keys_init(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.key_providers import create_keyring

    config = _config(args, env)
    if config.keys.provider != "local":
        raise ConfigError("keys init creates a local keyring; keys.provider is not 'local'")
    path = config.path(config.keys.keyring_path)
    if path.exists() and args.if_missing:
        out.emit({"keyring": str(path), "created": False}, f"keyring exists: {path}")
        return 0
    passphrase = env.get(config.keys.passphrase_env, "")
    create_keyring(path, passphrase.encode() if passphrase else None, SystemClock().now())
    out.emit(
        {"keyring": str(path), "created": True, "sealed": bool(passphrase), "primary": "1"},
        f"created keyring {path} (mode 0600{', sealed' if passphrase else ''})",
    )
    return 0


def cmd_keys_status(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.key_providers import LocalKeyProvider
    from vault_service.storage import SqliteRecordStore

    config = _config(args, env)
    provider = LocalKeyProvider.from_env(
        config.path(config.keys.keyring_path), config.keys.passphrase_env, env
    )
    store = SqliteRecordStore(config.path(config.storage.sqlite_path))
    try:
        store.migrate()
        counts = store.subject_keys_by_root_version()
    finally:
        store.close()
    versions = [
        {
            "version": v.version,
            "state": v.state.value,
            "primary": v.primary,
            "created_at": v.created_at,
            "subject_keys": counts.get(v.version, 0),
        }
        for v in provider.versions()
    ]
    unknown = sorted(set(counts) - {v["version"] for v in versions})
    lines = [f"provider: {provider.name}  primary: {provider.primary_version()}"]
    lines += [
        f"  version {v['version']:>4}  {v['state']:<22} subject keys: {v['subject_keys']}"
        f"{'  (primary)' if v['primary'] else ''}"
        for v in versions
    ]
    if unknown:
        lines.append(f"  WARNING: subject keys under versions the provider lacks: {unknown}")
    out.emit(
        {
            "provider": provider.name,
            "primary": provider.primary_version(),
            "versions": versions,
            "unknown_versions": unknown,
        },
        "\n".join(lines),
    )
    return 0 if not unknown else 1


# serve --------------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    import logging

    from vault_service.rpc.server import serve

    config = _config(args, env)
    os.umask(0o077)  # every file the server writes (logs, database, blobs) is private
    handler: logging.Handler
    if config.logging.file:
        log_path = config.path(config.logging.file)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=config.logging.level, handlers=[handler], force=True)
    return serve(config, env)


# record -------------------------------------------------------------------------------------------
def _client(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from vault_service.client import VaultClient

    token = env.get("VAULT_TOKEN", "")
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        raise ConfigError("no token: set VAULT_TOKEN or pass --token-file")
    return VaultClient(args.address, token, timeout=args.timeout)


def _fields(pairs: Sequence[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--field expects NAME=VALUE, got {pair!r}")
        fields[name] = value
    return fields


def cmd_record_put(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    content = Path(args.content_file).read_bytes() if args.content_file else None
    with _client(args, env) as client:
        result = client.put_record(
            args.subject,
            args.category,
            _fields(args.field),
            content=content,
            content_type=args.content_type,
            idempotency_key=args.idempotency_key,
        )
    out.emit(
        {"record_id": result.record_id, "version": result.version},
        f"stored record {result.record_id} (version {result.version})",
    )
    return 0


def cmd_record_get(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        record = client.get_record(
            args.id, args.purpose, fields=args.field or None, include_content=bool(args.content_out)
        )
    if args.content_out and record.content is not None:
        fd = os.open(args.content_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(record.content)
    info = record.info
    data = {
        "record_id": info.record_id,
        "category": info.category,
        "version": info.version,
        "fields": dict(record.fields),
        "content_type": info.content_type,
        "content_length": info.content_length,
    }
    text = "\n".join(
        [f"record {info.record_id} ({info.category}, version {info.version})"]
        + [f"  {k}: {v}" for k, v in sorted(record.fields.items())]
    )
    out.emit(data, text)
    return 0


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

    keys = sub.add_parser("keys", help="root keys").add_subparsers(dest="keys_cmd", required=True)
    k_init = keys.add_parser("init", help="create the local keyring (mode 0600)")
    k_init.add_argument(
        "--if-missing", action="store_true", help="succeed without changes if the keyring exists"
    )
    k_init.set_defaults(fn=cmd_keys_init)
    keys.add_parser("status", help="root-key versions and the subject keys each protects").set_defaults(
        fn=cmd_keys_status
    )

    sub.add_parser("serve", help="run the gRPC server").set_defaults(fn=cmd_serve)

    rec = sub.add_parser("record", help="smoke-test calls against a running server")
    rec_sub = rec.add_subparsers(dest="record_cmd", required=True)
    for name in ("put", "get"):
        r = rec_sub.add_parser(name)
        r.add_argument("--address", default="127.0.0.1:50051")
        r.add_argument("--token-file", help="file holding the bearer token (else $VAULT_TOKEN)")
        r.add_argument("--timeout", type=float, default=10.0)
        if name == "put":
            r.add_argument("--subject", required=True)
            r.add_argument("--category", required=True)
            r.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
            r.add_argument("--content-file")
            r.add_argument("--content-type", default="")
            r.add_argument("--idempotency-key", default="")
            r.set_defaults(fn=cmd_record_put)
        else:
            r.add_argument("--id", required=True)
            r.add_argument("--purpose", required=True)
            r.add_argument("--field", action="append", default=[], metavar="NAME")
            r.add_argument("--content-out", help="write the content object to this file (0600)")
            r.set_defaults(fn=cmd_record_get)
    return p


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of ``vaultctl``."""
    args = build_parser().parse_args(argv)
    out = _Out(args.json)
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
