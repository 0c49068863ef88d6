"""vaultctl audit: the tamper-evident audit trail (verify, checkpoint, prune, hash, query, tail).

Contract: verify, checkpoint, prune and hash run in-process on the assembled service (verify exits
1 and raises a security event when the chain is broken); query and tail ask a running server over
gRPC, with an auditor's token (tail, the export to a SIEM, is :mod:`.audit_tail`); with
``--prove`` both verify each entry offline before printing it (:mod:`.audit_prove`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vault_service.cli import audit_prove, audit_tail
from vault_service.cli.common import (
    Output,
    add_client_args,
    assembly_of,
    client_of,
    config_of,
    configure_logging,
    fmt_time,
)


def cmd_audit_verify(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.audit_log import verify

    config = config_of(args, env)
    configure_logging(config)
    assembly = assembly_of(config, env)
    try:
        public_key = (
            bytes.fromhex(args.public_key)
            if args.public_key
            else assembly.service.signing_key.public_key()
        )
        report = verify(assembly.store, assembly.checkpoints, public_key)
        witnessed = _witness_verdict(assembly)
    finally:
        assembly.store.close()
    if report.ok and witnessed in ("behind", "forked"):
        report = replace(
            report,
            ok=False,
            reason=f"the trail is {witnessed} the witnessed checkpoint (rolled back or forked)",
        )
    data = {
        "ok": report.ok,
        "reason": report.reason,
        "first_bad_entry": report.first_bad_seq,
        "entries_checked": report.entries_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "unsigned_tail": report.unsigned_tail,
        "public_key": public_key.hex(),
        "witness": witnessed,
    }
    verdict = "OK" if report.ok else "FAILED"
    text = (
        f"audit chain {verdict}: {report.reason}\n  entries checked: "
        f"{report.entries_checked}, checkpoints: {report.checkpoints_checked}, entries after "
        f"the latest checkpoint: {report.unsigned_tail}\n  signing key: {public_key.hex()}"
        f"\n  witness: {witnessed}"
    )
    if report.first_bad_seq is not None:
        text += f"\n  first bad entry: {report.first_bad_seq}"
    if not report.ok:
        from vault_service import security_events

        security_events.emit("audit_verification_failed", stage="verify")
    out.emit(data, text)
    return 0 if report.ok else 1


def _witness_verdict(assembly: Any) -> str:
    """How the stored trail stands against the witness: unwitnessed, consistent, behind,
    forked, or "none" (no witness configured) or "unreachable"."""
    from vault_service.errors import Unavailable

    if assembly.witnessing is None:
        return "none"
    try:
        return str(assembly.witnessing.check_audit().value)
    except Unavailable:
        return "unreachable"


def cmd_audit_checkpoint(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.audit_log import write_checkpoint

    config = config_of(args, env)
    assembly = assembly_of(config, env)
    try:
        svc = assembly.service
        if assembly.witnessing is not None:
            cp = assembly.witnessing.checkpoint(svc.clock.now())
        else:
            cp = write_checkpoint(svc.store, assembly.checkpoints, svc.signing_key, svc.clock.now())
    finally:
        assembly.store.close()
    out.emit(
        {"written": cp is not None, "seq": cp.seq if cp else None},
        f"checkpoint signed at entry {cp.seq}" if cp else "already checkpointed",
    )
    return 0


def cmd_audit_prune(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.audit_log import prune

    config = config_of(args, env)
    days = args.retention_days if args.retention_days is not None else config.audit.retention_days
    assembly = assembly_of(config, env)
    try:
        svc = assembly.service
        deleted = prune(svc.store, assembly.checkpoints, svc.signing_key, days * 86400, svc.clock.now())
    finally:
        assembly.store.close()
    out.emit(
        {"deleted": deleted, "retention_days": days},
        f"pruned {deleted} audit entries older than {days:g} days",
    )
    return 0


def cmd_audit_hash(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    config = config_of(args, env)
    assembly = assembly_of(config, env)
    try:
        pseudonym = assembly.service.pseudonym(assembly.service.subject_ref(args.subject_id))
    finally:
        assembly.store.close()
    out.emit({"subject_pseudonym": pseudonym}, pseudonym)
    return 0


def cmd_audit_query(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    prover = audit_prove.prover_of(args, env) if args.prove else None
    with client_of(args, env) as client:
        page = client.query_audit_page(
            subject_pseudonym=args.subject_pseudonym,
            principal=args.principal,
            action=args.action,
            decision=args.decision,
            since=args.since or 0.0,
            until=args.until or 0.0,
            page_size=args.page_size,
            page_token=args.page_token,
        )
    events = [e.as_dict() for e in page.events]
    lines = [
        f"{e['seq']:>8} {fmt_time(e['at'])} {e['principal']:<16} {e['action']:<16} "
        f"{e['decision']:<5} {e['reason']} {e['record_id']}"
        for e in events
    ]
    data: dict[str, Any] = {"events": events, "next_page_token": page.next_page_token}
    if prover is not None:
        try:
            checks, size = audit_prove.prove_page(prover, page.events, page.checkpoint)
        except audit_prove.ProofFailed as failed:
            out.emit(
                {"proved": False, "first_bad_entry": failed.seq, "reason": failed.reason},
                f"audit proof FAILED: {failed}",
            )
            return 1
        newer = sum(not c.proved for c in checks)
        lines = [
            f"{line}  {'proved' if c.proved else 'newer'}" for line, c in zip(lines, checks, strict=True)
        ]
        data.update(proved=True, checkpoint=page.checkpoint, tree_size=size, not_yet_provable=newer)
        lines.append(
            f"proofs OK: {len(checks) - newer} entries included in the signed checkpoint of size "
            f"{size}" + (f"; {newer} newer than it (not yet provable: ask again)" if newer else "")
        )
    if page.next_page_token:
        lines.append(f"(more: --page-token {page.next_page_token})")
    out.emit(data, "\n".join(lines) or "(no events)")
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl audit ..."""
    audit = sub.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(
        dest="audit_cmd", required=True
    )
    a_verify = audit.add_parser(
        "verify",
        help="check the hash chain against the signed checkpoints; exit 1 naming the first bad entry",
    )
    a_verify.add_argument(
        "--public-key",
        help="verify against this pinned key (hex) instead of the one the key provider unwraps",
    )
    a_verify.set_defaults(fn=cmd_audit_verify)
    audit.add_parser("checkpoint", help="sign the head of the chain now").set_defaults(
        fn=cmd_audit_checkpoint
    )
    a_prune = audit.add_parser("prune", help="delete entries past the retention period")
    a_prune.add_argument("--retention-days", type=float, default=None)
    a_prune.set_defaults(fn=cmd_audit_prune)
    a_hash = audit.add_parser("hash", help="print a subject's pseudonym (as audit entries name it)")
    a_hash.add_argument("subject_id")
    a_hash.set_defaults(fn=cmd_audit_hash)
    a_query = audit.add_parser("query", help="query the audit trail over gRPC (auditor token)")
    for flag in ("subject-pseudonym", "principal", "action", "decision", "page-token"):
        a_query.add_argument(f"--{flag}", default="")
    a_query.add_argument("--since", type=float, default=None, help="unix time")
    a_query.add_argument("--until", type=float, default=None, help="unix time")
    a_query.add_argument("--page-size", type=int, default=100)
    audit_prove.add_prove_args(a_query)
    add_client_args(a_query)
    a_query.set_defaults(fn=cmd_audit_query)
    audit_tail.add_parser(audit)
