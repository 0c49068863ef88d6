"""vaultctl offline decrypt: a subject-access export from a backup, with no running service
(disaster recovery; docs/format.md says what it reads).

Contract: the backup is never written. Its database is copied (with its WAL, if it has one),
its blob directory linked into a temporary directory (hard links: the
vault's own read path may remove a read-once record's blob, from the copy only), and the vault
is built on the copies by the ordinary composition root with the keyring given. The destruction
ledger given with ``--ledger`` is replayed first, exactly as at a server's start, so nothing the
vault destroyed after the backup was taken comes back; ``--without-ledger`` must be said out
loud. Then every record of the subject is released through THE release step under a recovery
purpose added to the policy (every category and field; allowed while restricted, dormant or
after an erasure for what the law kept) and written as ``vaultctl subject export`` writes it.
The temporary directory is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.cli.common import ExportFile, Output
from vault_service.errors import ConfigError

#: the purpose and role the recovery reads under (refused if the policy already uses the name)
RECOVERY = "vault_offline_recovery"


def _recovery_tables(policy_text: str, source: str) -> str:
    from vault_service.policy import load_policy

    policy = load_policy(policy_text, source)
    if RECOVERY in policy.purposes or RECOVERY in policy.roles:
        raise ConfigError(f"{source}: the name {RECOVERY!r} is reserved for offline recovery")
    categories = ", ".join(f'"{c}"' for c in sorted(policy.categories))
    return (
        f"\n[purposes.{RECOVERY}]\n"
        'description = "vaultctl offline decrypt: every record of a subject, from a backup."\n'
        f"categories = [{categories}]\n"
        "restriction_exempt = true\nretained_access = true\nreactivation = true\n"
        f'\n[roles.{RECOVERY}]\nactions = ["subject.export"]\npurposes = ["{RECOVERY}"]\n'
    )


def _copy_database(source: Path, target: Path) -> None:
    """Copy the database file and its WAL (if the backup has one) as files: SQLite is never
    opened on the backup (even a read-only open would create files beside it)."""
    if not source.is_file():
        raise ConfigError(f"{source}: no such database file")
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.is_file():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))
    conn = sqlite3.connect(target)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{source}: not a readable SQLite database ({type(exc).__name__})") from None
    finally:
        conn.close()


def _link_tree(source: Path, target: Path) -> None:
    """``target`` mirrors ``source`` with hard links (copies where links cannot be made)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def _config_text(work: Path, keyring: Path, passphrase_env: str) -> str:
    def q(value: object) -> str:  # a TOML basic string (JSON's escapes are TOML's)
        return json.dumps(str(value))

    return (
        'policy = "policy.toml"\n'
        '[server]\nlisten = "127.0.0.1:0"\n'
        f"[storage]\nsqlite_path = {q(work / 'vault.db')}\nblob_dir = {q(work / 'blobs')}\n"
        f'[keys]\nprovider = "local"\nkeyring_path = {q(keyring)}\n'
        f"passphrase_env = {q(passphrase_env)}\n"
        f"[lifecycle]\nledger_path = {q(work / 'ledger.jsonl')}\n"
        f"[audit]\ncheckpoint_path = {q(work / 'checkpoints.jsonl')}\n"
        '[logging]\nlevel = "WARNING"\nfile = ""\n'
    )


def cmd_offline_decrypt(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.app import build_service
    from vault_service.config import load_config
    from vault_service.policy import Principal
    from vault_service.service import CallContext

    if bool(args.ledger) == bool(args.without_ledger):
        raise ConfigError(
            "give the destruction ledger (--ledger PATH: what was destroyed after the backup stays"
            " destroyed) or say --without-ledger"
        )
    policy_path = Path(args.policy)
    with tempfile.TemporaryDirectory(prefix="vault-offline-") as tmp:
        work = Path(tmp)
        _copy_database(Path(args.db), work / "vault.db")
        if args.blobs:
            _link_tree(Path(args.blobs), work / "blobs")
        if args.ledger:
            shutil.copyfile(args.ledger, work / "ledger.jsonl")
        text = policy_path.read_text()
        (work / "policy.toml").write_text(text + _recovery_tables(text, str(policy_path)))
        (work / "vault.toml").write_text(
            _config_text(work, Path(args.keyring).resolve(), args.passphrase_env)
        )
        assembly = build_service(load_config(work / "vault.toml", env), env)
        try:
            call = CallContext(Principal(RECOVERY, RECOVERY), "offline-decrypt")
            with ExportFile(args.out) as export:
                for view in assembly.service.export_subject(call, args.subject, RECOVERY):
                    export.write(view.meta, view.fields, view.content)
        finally:
            assembly.store.close()
    out.emit(
        {"records": export.count, "file": args.out},
        f"decrypted {export.count} records of the subject from the backup into {args.out}",
    )
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl offline ..."""
    offline = sub.add_parser("offline", help="work on a backup with no running service").add_subparsers(
        dest="offline_cmd", required=True
    )
    dec = offline.add_parser("decrypt", help="a subject's records from a backup, decrypted")
    dec.add_argument("--keyring", required=True, help="the local provider's keyring file")
    dec.add_argument("--db", required=True, help="the backup's SQLite database file")
    dec.add_argument("--blobs", help="the backup's blob directory (content objects)")
    dec.add_argument("--policy", required=True, help="the policy the vault ran with")
    dec.add_argument("--subject", required=True)
    dec.add_argument("--out", required=True, help="JSON lines, created 0600")
    dec.add_argument("--ledger", help="the destruction ledger, replayed first")
    dec.add_argument("--without-ledger", action="store_true", help="no ledger: say so")
    dec.add_argument(
        "--passphrase-env",
        default="VAULT_KEYRING_PASSPHRASE",
        help="environment variable holding a sealed keyring's passphrase",
    )
    dec.set_defaults(fn=cmd_offline_decrypt)
