"""vaultctl witness: both logs against their witness (status), the operator's acknowledgment
of a restored database (docs/audit.md, "When the vault halts"), and a witness process of its own
(serve, key, logs: docs/audit.md, "A separate witness process").

Contract: ``status`` and ``acknowledge-restore`` run in-process on the assembled service.
``status`` exits 0 when both logs are consistent with the witness, 1 otherwise.
``acknowledge-restore`` exits 0 after acknowledging (or when there was nothing to acknowledge),
2 when no witness is configured. ``logs`` prints the ``--log`` arguments of this vault's two logs
(from ``--config``). ``key`` prints a witness directory's public key (creating the key if the
directory has none). ``serve`` runs the witness process on a directory, for the logs named by
``--log``, until SIGTERM or SIGINT (the calls in flight finish), on a loopback address unless
``--allow-remote``; its first line of output says where it listens and its key.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from vault_service.cli.common import Output, assembly_of, config_of, configure_logging
from vault_service.errors import ConfigError, InvalidArgument

_MAX_REASON = 200


def cmd_witness_status(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.audit.publish import compare
    from vault_service.lifecycle.ledger_sync import ledger_tree

    config = config_of(args, env)
    configure_logging(config)
    assembly = assembly_of(config, env)
    try:
        w = assembly.witnessing
        if w is None or w.audit_publisher is None or w.ledger_sync is None:
            out.emit({"witness": None}, "no witness configured ([witness] directory or url)")
            return 2
        audit = w.check_audit()
        sync = w.ledger_sync
        ledger = compare(sync.publisher.latest(), ledger_tree(w.ledger.lines()))
        halted = assembly.service.integrity.causes()
    finally:
        assembly.store.close()
    data = {"audit": audit.value, "ledger": ledger.value, "halted": halted}
    text = f"audit trail: {audit.value}\ndestruction ledger: {ledger.value}"
    if halted:
        text += "\nplaintext withheld: " + "; ".join(f"{k}: {v}" for k, v in halted.items())
    out.emit(data, text)
    return 0 if not halted and audit.value != "forked" else 1


def cmd_witness_acknowledge(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    reason = " ".join(str(args.reason).split())
    if not reason or len(reason) > _MAX_REASON or not reason.isprintable():
        raise InvalidArgument(f"--reason: 1 to {_MAX_REASON} printable characters")
    config = config_of(args, env)
    configure_logging(config)
    assembly = assembly_of(config, env)
    try:
        w = assembly.witnessing
        if w is None:
            out.emit({"acknowledged": False}, "no witness configured: nothing to acknowledge")
            return 2
        done = w.acknowledge_restore(reason, assembly.service.clock.now())
    finally:
        assembly.store.close()
    if done is None:
        out.emit({"acknowledged": False}, "the audit trail is consistent with the witness")
        return 0
    lost, restored = done
    out.emit(
        {"acknowledged": True, "witnessed_size": lost, "restored_size": restored},
        f"restore acknowledged: the witness held {lost} entries, the restored trail has "
        f"{restored}; {max(lost - restored, 0)} entries are lost and recorded as such. "
        "Restart the servers.",
    )
    return 0


def cmd_witness_logs(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    import dataclasses

    from vault_service.tlog import note

    config = config_of(args, env)
    configure_logging(config)
    # the service without its witness: only the signing key and the origins are wanted here
    bare = dataclasses.replace(config, witness=dataclasses.replace(config.witness, url="", directory=""))
    assembly = assembly_of(bare, env)
    try:
        w = assembly.witnessing
        assert w is not None
        public = assembly.service.signing_key.public_key()
        origins = {"audit": w.audit_origin, "ledger": w.ledger_origin}
    finally:
        assembly.store.close()
    logs = {name: note.verifier_key(origin, public) for name, origin in origins.items()}
    out.emit(
        {"logs": [{"log": k, "origin": origins[k], "verifier_key": v} for k, v in logs.items()]},
        "\n".join(f"--log {origins[k]}={v}" for k, v in logs.items()),
    )
    return 0


def cmd_witness_key(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    import os
    from pathlib import Path

    from vault_service.audit.witness import DirectoryWitness
    from vault_service.tlog import note

    _check_name(args.name)
    os.umask(0o077)
    public = DirectoryWitness(Path(args.directory), args.name).public_key()
    vkey = note.verifier_key(args.name, public, note.COSIGNATURE_V1)
    out.emit(
        {"name": args.name, "public_key": public.hex(), "verifier_key": vkey},
        f"{public.hex()}\n(name {args.name}; verifier key {vkey})",
    )
    return 0


def _check_name(name: str) -> None:
    from vault_service.tlog import note

    try:
        note.key_id(name, bytes(32), note.COSIGNATURE_V1)
    except ValueError as exc:
        raise ConfigError(f"--name: {exc}") from None


def _log_arg(text: str) -> tuple[str, bytes]:
    from vault_service.tlog import note

    origin, _, vkey = text.partition("=")
    try:
        name, public = note.parse_verifier_key(vkey)
    except ValueError as exc:
        raise ConfigError(f"--log {origin}=...: not a log's verifier key ({exc})") from None
    if name != origin:
        raise ConfigError(f"--log {origin}=...: the key is named {name!r}: a log's key is its origin")
    return origin, public


def _listen_arg(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {text}: expected HOST:PORT")
    return host, int(port)


def cmd_witness_serve(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    import os
    import signal
    import sys
    import threading
    from pathlib import Path

    from vault_service import logs
    from vault_service.app import is_loopback
    from vault_service.audit.witness import DirectoryWitness, LogKey
    from vault_service.audit.witness_http import WitnessHTTPServer, serve_until

    if not is_loopback(args.listen) and not args.allow_remote:
        raise ConfigError(
            f"--listen {args.listen}: not a loopback address. The witness speaks plain HTTP and must"
            " be reachable by the vault only: pass --allow-remote on a private network or behind"
            " a TLS-terminating proxy"
        )
    host, port = _listen_arg(args.listen)
    _check_name(args.name)
    known: dict[str, LogKey] = {}
    for text in args.log:
        origin, public = _log_arg(text)
        if origin in known:
            raise ConfigError(f"--log {origin}: given twice")
        known[origin] = LogKey(origin, public)
    if args.max_body_bytes < 64 * 1024:
        raise ConfigError("--max-body-bytes: at least 65536")
    os.umask(0o077)
    logs.configure(args.log_level, args.log_format, None)
    witness = DirectoryWitness(Path(args.directory), args.name)
    try:
        server = WitnessHTTPServer((host, port), witness, known, args.max_body_bytes)
    except OSError as exc:
        raise ConfigError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    public = witness.public_key()
    where = f"{host}:{server.port}" if ":" not in host else f"[{host}]:{server.port}"
    out.emit(
        {"listening": where, "name": args.name, "public_key": public.hex(), "logs": sorted(known)},
        f"witness {args.name} listening on {where} (public key {public.hex()}; logs: {len(known)})",
    )
    sys.stdout.flush()
    serve_until(server, stop)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``vaultctl witness``."""
    witness = sub.add_parser("witness", help="the logs against their witness").add_subparsers(
        dest="witness_command", required=True
    )
    witness.add_parser("status", help="both logs against the witness").set_defaults(
        fn=cmd_witness_status
    )
    ack = witness.add_parser(
        "acknowledge-restore",
        help="accept a database restored from a backup (the audit entries since are lost)",
    )
    ack.add_argument("--reason", required=True, help="why (kept in the trail and the witness)")
    ack.set_defaults(fn=cmd_witness_acknowledge)
    witness.add_parser(
        "logs", help="this vault's two logs as a witness process's --log arguments (--config)"
    ).set_defaults(fn=cmd_witness_logs)
    key = witness.add_parser("key", help="a witness directory's public key (for [witness] public_key)")
    key.add_argument("--directory", required=True, help="the witness's directory")
    key.add_argument("--name", default="vault-service-witness", help="the witness's name")
    key.set_defaults(fn=cmd_witness_key)
    serve = witness.add_parser("serve", help="run a witness process (c2sp.org/tlog-witness)")
    serve.add_argument("--directory", required=True, help="its directory (key, checkpoints)")
    serve.add_argument("--listen", required=True, help="HOST:PORT (loopback unless --allow-remote)")
    serve.add_argument(
        "--log",
        action="append",
        required=True,
        metavar="ORIGIN=VKEY",
        help="a log it witnesses: its origin and verifier key (vaultctl witness logs); repeatable",
    )
    serve.add_argument("--name", default="vault-service-witness", help="its cosignature name")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="listen on a non-loopback address (plain HTTP: a private network or a TLS proxy)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="the largest checkpoint-with-entries request (default 16 MiB)",
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument("--log-format", default="json", choices=["json", "text"])
    serve.set_defaults(fn=cmd_witness_serve)
