"""vaultctl verify-deletion, verify-certificate and report: evidence that the vault keeps its
promises.

Contract: verify-deletion checks every erasure in-process and writes its certificates (exit 0 all
verified, 3 some pending, 1 any failed); verify-certificate checks one certificate offline (its
signature, then its ledger proof: the ledger checkpoint's signature, the witness's cosignature
with ``--witness-key``, the line's inclusion; a certificate without one: "no ledger proof"); report
writes the compliance report (:mod:`vault_service.cli.report`) and exits 1 if the audit chain did
not verify.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.cli.common import Output, assembly_of, config_of, configure_logging
from vault_service.errors import ConfigError


def _certified(check: Any, out_dir: str) -> str | None:
    """Write a VERIFIED check's certificate into ``out_dir``; its file name (None if none)."""
    if check.certificate is None or not out_dir:
        return None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    cert_file = Path(out_dir) / f"{check.certificate['certificate_id']}.json"
    cert_file.write_text(json.dumps(check.certificate, indent=2, sort_keys=True))
    return str(cert_file)


def _row(check: Any, out_dir: str) -> dict[str, Any]:
    return {
        "subject_pseudonym": check.subject_pseudonym,
        "result": check.label,
        "reasons": check.reasons,
        "checks": check.checks,
        "certificate_id": check.certificate["certificate_id"] if check.certificate else None,
        "certificate_file": _certified(check, out_dir),
    }


def cmd_verify_deletion(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    config = config_of(args, env)
    configure_logging(config)
    assembly = assembly_of(config, env)
    try:
        results = assembly.service.verify_deletions()
        records = assembly.service.verify_record_deletions()
    finally:
        assembly.store.close()
    rows = [{**_row(r, args.out_dir), "erased_at": r.erased_at} for r in results]
    shreds = [
        {
            **_row(r, args.out_dir),
            "record_id": r.record_id,
            "cause": r.cause,
            "destroyed_at": r.erased_at,
        }
        for r in records
    ]

    def line(x: dict[str, Any], name: str) -> str:
        return f"{name}  {x['result']}" + (f"  ({'; '.join(x['reasons'])})" if x["reasons"] else "")

    text = "\n".join(
        [line(x, x["subject_pseudonym"]) for x in rows]
        + [line(x, f"record {x['record_id']} ({x['cause']})") for x in shreds]
    )
    out.emit({"erasures": rows, "records": shreds}, text or "no erasures, no record destructions")
    everything = [*results, *records]
    if any(r.status == "FAILED" for r in everything):
        return 1
    return 3 if any(r.status == "PENDING" for r in everything) else 0


def cmd_verify_certificate(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.ledger_proof import check_ledger_proof
    from vault_service.lifecycle.verification import check_certificate

    try:
        cert = json.loads(Path(args.file).read_text())
        if not isinstance(cert, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        out.emit({"valid": False, "reason": "unreadable"}, "certificate INVALID: unreadable")
        return 1
    pinned = _key(args.public_key, "--public-key") if args.public_key else None
    witness = (args.witness_name, _key(args.witness_key, "--witness-key")) if args.witness_key else None
    ok, reason = check_certificate(cert, pinned)
    ledger = ""
    if ok:  # the signature holds: the key it names is the vault's (or the pinned one)
        ok, ledger = check_ledger_proof(cert, pinned or bytes.fromhex(cert["public_key"]), witness)
        if not ok:
            reason = f"ledger proof: {ledger}"
    data = {
        "valid": ok,
        "reason": reason,
        "ledger_proof": ledger,
        "subject_pseudonym": cert.get("subject_pseudonym"),
    }
    text = f"certificate {'VALID' if ok else 'INVALID'}: {reason}"
    if ok:
        text += f"\n  ledger proof: {ledger}"
    out.emit(data, text)
    return 0 if ok else 1


def _key(value: str, flag: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{flag}: an Ed25519 public key is 64 hex digits")
    return raw


def cmd_report(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.cli.report import gather, render_html

    if args.report_json:
        out = Output(True)
    if not args.html and not args.json_out and not out.as_json:
        raise ConfigError("report: give --html PATH, --json-out PATH or --json")
    config = config_of(args, env)
    configure_logging(config)
    assembly = assembly_of(config, env)
    try:
        data = gather(assembly, args.days)
    finally:
        assembly.store.close()
    written = []
    if args.html:
        Path(args.html).write_text(render_html(data), encoding="utf-8")
        written.append(args.html)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(data, indent=2, sort_keys=True))
        written.append(args.json_out)
    audit = "verified" if data["audit_chain"]["ok"] else "FAILED"
    summary = (
        f"report: {sum(c['records'] for c in data['categories'])} records, "
        f"{data['deletions_due']['total']} deletions due in {args.days} days, "
        f"{data['erasures']['total']} erasures, audit chain {audit}"
        + (f"; written to {', '.join(written)}" if written else "")
    )
    out.emit(data, summary)
    return 0 if data["audit_chain"]["ok"] else 1


def add_parser(sub: Any) -> None:
    """vaultctl verify-deletion, verify-certificate and report"""
    verify = sub.add_parser(
        "verify-deletion", help="check every erasure; exit 0 all verified, 3 some pending, 1 any failed"
    )
    verify.add_argument("--out-dir", help="write the deletion certificates here")
    verify.set_defaults(fn=cmd_verify_deletion)
    cert = sub.add_parser("verify-certificate", help="check a deletion certificate offline")
    cert.add_argument("file")
    cert.add_argument("--public-key", help="the vault's signing key (hex) to pin")
    cert.add_argument(
        "--witness-key",
        help="require the witness's cosignature on the ledger checkpoint (its public key, hex)",
    )
    cert.add_argument("--witness-name", default="vault-service-witness", help="the witness's name")
    cert.set_defaults(fn=cmd_verify_certificate)
    report = sub.add_parser(
        "report",
        help="compliance report for the privacy officer (--html PATH, --json-out PATH, --json)",
    )
    report.add_argument("--html", metavar="PATH", help="write one self-contained HTML page")
    report.add_argument("--json-out", metavar="PATH", help="write the report's data as JSON")
    report.add_argument(
        "--json", dest="report_json", action="store_true", help="print the report's data as JSON"
    )
    report.add_argument("--days", type=int, default=30, help="deletion forecast horizon (days)")
    report.set_defaults(fn=cmd_report)
