"""vaultctl witness: both logs against their witness (status), and the operator's
acknowledgment of a restored database (docs/audit.md, "When the vault halts").

Contract: both run in-process on the assembled service. ``status`` exits 0 when both logs are
consistent with the witness, 1 otherwise. ``acknowledge-restore`` exits 0 after acknowledging
(or when there was nothing to acknowledge), 2 when no witness is configured.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from vault_service.cli.common import Output, assembly_of, config_of, configure_logging
from vault_service.errors import InvalidArgument

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
            out.emit({"witness": None}, "no witness configured ([witness] directory)")
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
