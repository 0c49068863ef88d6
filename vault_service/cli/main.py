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
def _provider(config: Config, env: Mapping[str, str]) -> Any:
    from vault_service.key_providers.factory import build_provider

    return build_provider(config, env)


def _store(config: Config) -> Any:
    from vault_service.storage.factory import open_migrated_store

    return open_migrated_store(config)


def cmd_keys_init(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    config = _config(args, env)
    if config.keys.provider != "local":
        primary = _provider(config, env).initialize()
        out.emit(
            {"provider": config.keys.provider, "primary": primary, "created": True},
            f"{config.keys.provider}: root key ready, primary version {primary}",
        )
        return 0
    from vault_service.key_providers import create_keyring

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


def _fmt_time(ts: float | None) -> str:
    import datetime

    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def cmd_keys_status(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.rotation import inventory

    config = _config(args, env)
    provider = _provider(config, env)
    store = _store(config)
    try:
        rows = inventory(store, provider)
        counts = store.subject_keys_by_root_version()
    finally:
        store.close()
    known = {r.version for r in rows}
    unknown = sorted(set(counts) - known)
    versions = [
        {
            "version": r.version,
            "provider_state": r.provider_state,
            "lifecycle": r.lifecycle,
            "primary": r.primary,
            "subject_keys": r.subject_keys,
            "service_keys": r.service_keys,
            "destroy_at": r.destroy_at,
        }
        for r in rows
    ]
    lines = [f"provider: {provider.name}  primary: {provider.primary_version()}"]
    lines += [
        f"  version {r.version:>4}  {r.lifecycle:<22} subject keys: {r.subject_keys:>8}"
        f"  service keys: {r.service_keys}"
        + (f"  destroyed at: {_fmt_time(r.destroy_at)}" if r.destroy_at else "")
        for r in rows
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


def cmd_keys_rotate(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.rotation import rotate

    config = _config(args, env)
    provider = _provider(config, env)
    store = _store(config)
    try:
        old, new = rotate(store, provider, SystemClock().now())
    finally:
        store.close()
    out.emit(
        {"provider": provider.name, "previous_primary": old, "primary": new},
        f"rotated: primary root version {old} -> {new}; run 'vaultctl keys rewrap' next",
    )
    return 0


def cmd_keys_epoch(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.rotation import run_epochs

    config = _config(args, env)
    provider = _provider(config, env)
    store = _store(config)
    lc = config.lifecycle
    try:
        report = run_epochs(
            store,
            provider,
            SystemClock().now(),
            lc.rotate_every_days * 86400,
            lc.backup_window_days * 86400,
        )
    finally:
        store.close()
    out.emit(
        {
            "rotated_to": report.rotated_to,
            "rewrapped": report.rewrapped,
            "retired": report.retired,
            "destroyed": report.destroyed,
        },
        f"rotated to {report.rotated_to or '-'}, rewrapped {report.rewrapped}, retired "
        f"{report.retired or '-'}, destroyed {report.destroyed or '-'}",
    )
    return 0


def _progress_bar(done: int, total: int) -> None:
    width = 40
    filled = width * done // total if total else width
    sys.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def cmd_keys_rewrap(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.rotation import rewrap_keys

    config = _config(args, env)
    provider = _provider(config, env)
    store = _store(config)
    show = sys.stderr.isatty() and not out.as_json
    try:
        summary = rewrap_keys(
            store,
            provider,
            batch_size=args.batch_size,
            progress=_progress_bar if show else None,
            max_keys=args.max_keys,
        )
    finally:
        store.close()
    if show:
        sys.stderr.write("\n")
    data = {
        "primary": summary.primary,
        "rewrapped": summary.rewrapped,
        "service_keys_rewrapped": summary.service_keys,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "remaining": summary.remaining,
        "seconds": round(summary.seconds, 3),
        "keys_per_second": round(summary.rate, 1),
    }
    out.emit(
        data,
        f"rewrapped {summary.rewrapped} subject keys (and {summary.service_keys} service keys)"
        f" to version {summary.primary} in "
        f"{summary.seconds:.2f}s ({summary.rate:.0f}/s); skipped {summary.skipped}, "
        f"failed {summary.failed}, remaining {summary.remaining}",
    )
    return 0 if summary.failed == 0 else 1


def cmd_keys_retire(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.rotation import retire

    config = _config(args, env)
    store = _store(config)
    try:
        status = retire(store, _provider(config, env), args.version, SystemClock().now())
    finally:
        store.close()
    out.emit(
        {"version": status.version, "lifecycle": status.lifecycle},
        f"root version {status.version} retired",
    )
    return 0


def cmd_keys_destroy(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.rotation import destroy, mark_for_destruction

    config = _config(args, env)
    provider = _provider(config, env)
    store = _store(config)
    now = SystemClock().now()
    try:
        if args.mark:
            status = mark_for_destruction(store, provider, args.version, now)
            out.emit(
                {"version": status.version, "lifecycle": status.lifecycle},
                f"root version {status.version} marked; destroy it with: "
                f"vaultctl keys destroy {status.version}",
            )
            return 0
        result = destroy(store, provider, args.version, now)
    finally:
        store.close()
    out.emit(
        {
            "version": result.version,
            "state": result.state.value,
            "destroy_at": result.destroy_at,
            "detail": result.detail,
        },
        f"root version {result.version}: {result.state.value} "
        f"(effective {_fmt_time(result.destroy_at)}): {result.detail}",
    )
    return 0


# audit --------------------------------------------------------------------------------------------
def _logging(config: Config) -> None:
    """Log as the server does (level, format, file from the config): operator jobs that raise
    security events (audit verification, deletion verification) reach the same log pipeline."""
    from vault_service import logs

    logs.configure(
        config.logging.level,
        config.logging.format,
        config.path(config.logging.file) if config.logging.file else None,
    )


def _assembly(config: Config, env: Mapping[str, str]) -> Any:
    from vault_service.rpc.server import build_service

    return build_service(config, env)


def cmd_audit_verify(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.audit_log import verify

    config = _config(args, env)
    _logging(config)
    assembly = _assembly(config, env)
    try:
        public_key = (
            bytes.fromhex(args.public_key)
            if args.public_key
            else assembly.service.signing_key.public_key()
        )
        report = verify(assembly.store, assembly.checkpoints, public_key)
    finally:
        assembly.store.close()
    data = {
        "ok": report.ok,
        "reason": report.reason,
        "first_bad_entry": report.first_bad_seq,
        "entries_checked": report.entries_checked,
        "checkpoints_checked": report.checkpoints_checked,
        "unsigned_tail": report.unsigned_tail,
        "public_key": public_key.hex(),
    }
    verdict = "OK" if report.ok else "FAILED"
    text = (
        f"audit chain {verdict}: {report.reason}\n  entries checked: "
        f"{report.entries_checked}, checkpoints: {report.checkpoints_checked}, entries after "
        f"the latest checkpoint: {report.unsigned_tail}\n  signing key: {public_key.hex()}"
    )
    if report.first_bad_seq is not None:
        text += f"\n  first bad entry: {report.first_bad_seq}"
    if not report.ok:
        from vault_service import security_events

        security_events.emit("audit_verification_failed", stage="verify")
    out.emit(data, text)
    return 0 if report.ok else 1


def cmd_audit_checkpoint(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.audit_log import write_checkpoint

    config = _config(args, env)
    assembly = _assembly(config, env)
    try:
        svc = assembly.service
        cp = write_checkpoint(svc.store, assembly.checkpoints, svc.signing_key, svc.clock.now())
    finally:
        assembly.store.close()
    out.emit(
        {"written": cp is not None, "seq": cp.seq if cp else None},
        f"checkpoint signed at entry {cp.seq}" if cp else "already checkpointed",
    )
    return 0


def cmd_audit_prune(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.audit_log import prune

    config = _config(args, env)
    days = args.retention_days if args.retention_days is not None else config.audit.retention_days
    assembly = _assembly(config, env)
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


def cmd_audit_hash(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    config = _config(args, env)
    assembly = _assembly(config, env)
    try:
        pseudonym = assembly.service.pseudonym(assembly.service.subject_ref(args.subject_id))
    finally:
        assembly.store.close()
    out.emit({"subject_pseudonym": pseudonym}, pseudonym)
    return 0


def cmd_audit_query(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        events, token = client.query_audit(
            subject_pseudonym=args.subject_pseudonym,
            principal=args.principal,
            action=args.action,
            decision=args.decision,
            since=args.since or 0.0,
            until=args.until or 0.0,
            page_size=args.page_size,
            page_token=args.page_token,
        )
    lines = [
        f"{e['seq']:>8} {_fmt_time(e['at'])} {e['principal']:<16} {e['action']:<16} "
        f"{e['decision']:<5} {e['reason']} {e['record_id']}"
        for e in events
    ]
    if token:
        lines.append(f"(more: --page-token {token})")
    out.emit({"events": events, "next_page_token": token}, "\n".join(lines) or "(no events)")
    return 0


# consent and subject rights -------------------------------------------------------------------
def _consent_dict(c: Any) -> dict[str, Any]:
    return {
        "grant_id": c.grant_id,
        "purpose": c.purpose,
        "grantee_principal": c.grantee_principal,
        "grantee_role": c.grantee_role,
        "scopes": {k: list(v) for k, v in c.scopes.items()},
        "valid_from": c.valid_from,
        "valid_until": c.valid_until,
        "evidence_reference": c.evidence_reference,
        "revoked_at": c.revoked_at,
    }


def cmd_consent_grant(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    scopes: dict[str, list[str] | None] = {}
    for scope in args.scope:
        category, _, fields = scope.partition(":")
        scopes[category] = fields.split(",") if fields else None
    with _client(args, env) as client:
        consent = client.grant_consent(
            args.subject,
            args.purpose,
            scopes,
            evidence_reference=args.evidence,
            grantee_principal=args.principal or "",
            grantee_role=args.role or "",
            valid_until=args.valid_until or 0.0,
        )
    out.emit(_consent_dict(consent), f"granted {consent.grant_id}")
    return 0


def cmd_consent_revoke(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        consent = client.revoke_consent(args.grant_id)
    out.emit(_consent_dict(consent), f"revoked {consent.grant_id}")
    return 0


def cmd_consent_list(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        consents = client.list_consents(args.subject)
    lines = [
        f"{c.grant_id} {c.purpose:<18} {c.grantee_principal or 'role:' + c.grantee_role:<20}"
        f" {'revoked' if c.revoked_at else 'active'}"
        for c in consents
    ]
    out.emit({"consents": [_consent_dict(c) for c in consents]}, "\n".join(lines) or "(none)")
    return 0


def cmd_subject_restrict(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    restricted = args.subject_cmd == "restrict"
    with _client(args, env) as client:
        changed = client.restrict_processing(args.subject, restricted)
    out.emit(
        {"changed": changed, "restricted": restricted},
        ("restricted" if restricted else "restriction lifted") if changed else "no such subject",
    )
    return 0 if changed else 1


def cmd_subject_export(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    import base64

    count = 0
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f, _client(args, env) as client:
        for record in client.export_subject(args.subject, args.purpose):
            info = record.info
            line = {
                "record_id": info.record_id,
                "category": info.category,
                "version": info.version,
                "created_at": info.created_at,
                "updated_at": info.updated_at,
                "content_type": info.content_type,
                "fields": dict(record.fields),
            }
            if record.content is not None:
                line["content_base64"] = base64.b64encode(record.content).decode()
            f.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    out.emit({"records": count, "file": args.out}, f"exported {count} records to {args.out}")
    return 0


# shares and events --------------------------------------------------------------------------------
def _share_dict(sh: Any) -> dict[str, Any]:
    return {
        "share_id": sh.share_id,
        "recipient": sh.recipient,
        "purpose": sh.purpose,
        "record_count": sh.record_count,
        "fields": list(sh.fields),
        "expires_at": sh.expires_at,
        "event_name": sh.event_name,
        "event_period_seconds": sh.event_period_seconds,
        "created_at": sh.created_at,
        "revoked_at": sh.revoked_at,
    }


def cmd_share_create(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        share = client.create_share(
            args.subject,
            args.recipient,
            args.purpose,
            args.record,
            args.field,
            expires_at=args.expires_at or 0.0,
            event_name=args.event or "",
            event_period_seconds=(args.event_period_days or 0.0) * 86400,
        )
    out.emit(_share_dict(share), f"share {share.share_id} to {share.recipient}")
    return 0


def cmd_share_read(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    records: list[dict[str, Any]] = []
    content_dir = Path(args.content_dir) if args.content_dir else None
    with _client(args, env) as client:
        for item in client.read_share(args.share_id):
            if isinstance(item, tuple):
                record_id, offset, data = item
                if content_dir is not None:
                    content_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    fd = os.open(content_dir / record_id, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "r+b") as f:
                        f.seek(offset)
                        f.write(data)
                continue
            records.append(
                {
                    "record_id": item.info.record_id,
                    "category": item.info.category,
                    "fields": dict(item.fields),
                }
            )
    lines = [f"{r['record_id']} {r['category']}: {r['fields']}" for r in records]
    out.emit({"records": records}, "\n".join(lines) or "(nothing)")
    return 0


def cmd_share_revoke(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        share = client.revoke_share(args.share_id)
    out.emit(_share_dict(share), f"revoked {share.share_id}")
    return 0


def cmd_share_list(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        shares = client.list_shares(args.subject) if args.subject else client.received_shares()
    lines = [
        f"{sh.share_id} -> {sh.recipient} {sh.purpose} {len(sh.fields)} fields"
        f"{' (revoked)' if sh.revoked_at else ''}"
        for sh in shares
    ]
    out.emit({"shares": [_share_dict(sh) for sh in shares]}, "\n".join(lines) or "(none)")
    return 0


def cmd_event_record(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        recorded = client.record_event(args.subject, args.name, args.at or 0.0)
    out.emit({"recorded": recorded}, "recorded" if recorded else "already recorded")
    return 0


# large objects ------------------------------------------------------------------------------------
def _bytes_bar(done: int, total: int | None) -> None:
    if total:
        width = 40
        filled = width * done // total
        sys.stderr.write(
            f"\r[{'#' * filled}{' ' * (width - filled)}] {done / 1048576:.1f}/{total / 1048576:.1f} MiB"
        )
    else:
        sys.stderr.write(f"\r{done / 1048576:.1f} MiB")
    sys.stderr.flush()


def cmd_record_upload(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    show = sys.stderr.isatty() and not out.as_json
    with _client(args, env) as client:
        result = client.upload_record(
            args.file,
            subject_id=args.subject or "",
            category=args.category or "",
            fields=_fields(args.field),
            content_type=args.content_type,
            idempotency_key=args.idempotency_key,
            record_id=args.record_id or "",
            expected_version=args.expected_version,
            progress=_bytes_bar if show else None,
        )
    if show:
        sys.stderr.write("\n")
    out.emit(
        {"record_id": result.record_id, "version": result.version},
        f"uploaded {args.file} as record {result.record_id} (version {result.version})",
    )
    return 0


def cmd_record_download(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    show = sys.stderr.isatty() and not out.as_json
    with _client(args, env) as client:
        total = None
        if show:
            total = client.get_record(args.id, args.purpose, fields=["content"]).info.content_length
        written = client.download_to(
            args.out, args.id, args.purpose, progress=_bytes_bar if show else None, total=total
        )
    if show:
        sys.stderr.write("\n")
    out.emit(
        {"record_id": args.id, "bytes": written, "file": args.out},
        f"downloaded {written} bytes to {args.out}",
    )
    return 0


def cmd_blobs_sweep(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    config = _config(args, env)
    assembly = _assembly(config, env)
    try:
        age = (
            args.min_age_seconds
            if args.min_age_seconds is not None
            else config.storage.partial_upload_max_age_seconds
        )
        removed = assembly.service.sweep_blobs(age)
    finally:
        assembly.store.close()
    out.emit({"removed": removed}, f"removed {removed} partial or orphan blobs")
    return 0


# retention and holds ------------------------------------------------------------------------------
def cmd_retention_sweep(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    config = _config(args, env)
    assembly = _assembly(config, env)
    try:
        done = assembly.service.sweep_retention(batch=args.batch_size, dry_run=args.dry_run)
    finally:
        assembly.store.close()
    verb = "due" if args.dry_run else "shredded"
    out.emit(
        {"dry_run": args.dry_run, verb: [{"record_id": r, "rule": rule} for r, rule in done]},
        "\n".join(f"{verb}: {r} ({rule})" for r, rule in done) or f"nothing {verb}",
    )
    return 0


def cmd_dormancy_sweep(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    config = _config(args, env)
    lc = config.lifecycle
    assembly = _assembly(config, env)
    try:
        counts = assembly.service.sweep_dormancy(
            lc.dormant_after_days * 86400,
            lc.dormancy_notice_days * 86400,
            lc.dormant_destroy_after_days * 86400,
        )
    finally:
        assembly.store.close()
    out.emit(counts, ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def cmd_hold(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    with _client(args, env) as client:
        if args.hold_cmd == "place":
            hold = client.place_hold(args.subject, args.reason, args.case, args.record or "")
            out.emit(hold, f"hold {hold['hold_id']} placed")
        elif args.hold_cmd == "release":
            hold, done = client.release_hold(args.hold_id)
            out.emit(
                {**hold, "deletions_carried_out": done},
                f"hold {hold['hold_id']} released; {done} deferred deletions carried out",
            )
        else:
            holds = client.list_holds(args.subject)
            out.emit(
                {"holds": holds},
                "\n".join(
                    f"{h['hold_id']} {h['case_reference']} "
                    f"{'released' if h['released_at'] else 'active'}"
                    for h in holds
                )
                or "(none)",
            )
    return 0


# deletion verification ----------------------------------------------------------------------------
def cmd_verify_deletion(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    config = _config(args, env)
    _logging(config)
    assembly = _assembly(config, env)
    try:
        results = assembly.service.verify_deletions()
    finally:
        assembly.store.close()
    rows = []
    for r in results:
        cert_file = None
        if r.certificate is not None and args.out_dir:
            Path(args.out_dir).mkdir(parents=True, exist_ok=True)
            cert_file = str(Path(args.out_dir) / f"{r.certificate['certificate_id']}.json")
            Path(cert_file).write_text(json.dumps(r.certificate, indent=2, sort_keys=True))
        rows.append(
            {
                "subject_pseudonym": r.subject_pseudonym,
                "erased_at": r.erased_at,
                "result": r.label,
                "reasons": r.reasons,
                "checks": r.checks,
                "certificate_id": r.certificate["certificate_id"] if r.certificate else None,
                "certificate_file": cert_file,
            }
        )
    text = (
        "\n".join(
            f"{x['subject_pseudonym']}  {x['result']}"
            + (f"  ({'; '.join(x['reasons'])})" if x["reasons"] else "")
            for x in rows
        )
        or "no erasures"
    )
    out.emit({"erasures": rows}, text)
    if any(r.status == "FAILED" for r in results):
        return 1
    return 3 if any(r.status == "PENDING" for r in results) else 0


def cmd_verify_certificate(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.lifecycle.verification import check_certificate

    try:
        cert = json.loads(Path(args.file).read_text())
    except (OSError, ValueError):
        out.emit({"valid": False, "reason": "unreadable"}, "certificate INVALID: unreadable")
        return 1
    ok, reason = check_certificate(cert, bytes.fromhex(args.public_key) if args.public_key else None)
    out.emit(
        {"valid": ok, "reason": reason, "subject_pseudonym": cert.get("subject_pseudonym")},
        f"certificate {'VALID' if ok else 'INVALID'}: {reason}",
    )
    return 0 if ok else 1


# serve --------------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.rpc.server import serve

    config = _config(args, env)
    os.umask(0o077)  # every file the server writes (logs, database, blobs) is private
    _logging(config)
    processes = args.workers or config.server.processes
    if processes < 1:
        raise ConfigError("--workers must be >= 1")
    if processes > 1 and not args.worker:
        from vault_service.rpc.workers import serve_workers

        return serve_workers(config, Path(args.config), env, processes)
    return serve(config, env, worker=args.worker)


# record -------------------------------------------------------------------------------------------
def _client(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from vault_service.client import VaultClient

    token = env.get("VAULT_SERVICE_TOKEN", "")
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        raise ConfigError("no token: set VAULT_SERVICE_TOKEN or pass --token-file")
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


def _add_keys(sub: Any) -> None:
    """vaultctl keys ..."""
    keys = sub.add_parser("keys", help="root keys").add_subparsers(dest="keys_cmd", required=True)
    k_init = keys.add_parser("init", help="create the root key (local keyring file: mode 0600)")
    k_init.add_argument(
        "--if-missing", action="store_true", help="succeed without changes if the keyring exists"
    )
    k_init.set_defaults(fn=cmd_keys_init)
    keys.add_parser(
        "status", help="root-key versions, their states, and the keys each protects"
    ).set_defaults(fn=cmd_keys_status)
    keys.add_parser("rotate", help="create a new root version and make it primary").set_defaults(
        fn=cmd_keys_rotate
    )
    keys.add_parser(
        "epoch",
        help="the scheduled epoch job once: rotate if due, rewrap, retire "
        "unused versions, destroy those past the backup window",
    ).set_defaults(fn=cmd_keys_epoch)
    k_rewrap = keys.add_parser(
        "rewrap",
        help="rewrap subject keys onto the primary version (resumable; no data is re-encrypted)",
    )
    k_rewrap.add_argument("--batch-size", type=int, default=200)
    k_rewrap.add_argument(
        "--max-keys", type=int, default=None, help="stop after this many keys (re-run to continue)"
    )
    k_rewrap.set_defaults(fn=cmd_keys_rewrap)
    k_retire = keys.add_parser("retire", help="retire a version nothing depends on any more")
    k_retire.add_argument("version")
    k_retire.set_defaults(fn=cmd_keys_retire)
    k_destroy = keys.add_parser(
        "destroy", help="destroy a retired version: --mark first, then again without --mark"
    )
    k_destroy.add_argument("version")
    k_destroy.add_argument("--mark", action="store_true", help="first step: mark for destruction")
    k_destroy.set_defaults(fn=cmd_keys_destroy)


def _add_audit(sub: Any) -> None:
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
    a_query.add_argument("--address", default="127.0.0.1:50051")
    a_query.add_argument(
        "--token-file", help="file holding the bearer token (else $VAULT_SERVICE_TOKEN)"
    )
    a_query.add_argument("--timeout", type=float, default=10.0)
    a_query.set_defaults(fn=cmd_audit_query)


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default="127.0.0.1:50051")
    p.add_argument("--token-file", help="file holding the bearer token (else $VAULT_SERVICE_TOKEN)")
    p.add_argument("--timeout", type=float, default=10.0)


def _add_consent(sub: Any) -> None:
    """vaultctl consent ..."""
    consent = sub.add_parser("consent", help="consent grants (over gRPC)").add_subparsers(
        dest="consent_cmd", required=True
    )
    grant = consent.add_parser("grant", help="record a subject's consent")
    _client_args(grant)
    grant.add_argument("--subject", required=True)
    grant.add_argument("--purpose", required=True)
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument("--principal", help="the grantee principal")
    who.add_argument("--role", help="every principal of this role")
    grant.add_argument("--scope", action="append", required=True, metavar="CATEGORY[:F1,F2]")
    grant.add_argument("--evidence", required=True, help="where the consent is evidenced")
    grant.add_argument("--valid-until", type=float, default=None, help="unix time")
    grant.set_defaults(fn=cmd_consent_grant)
    revoke = consent.add_parser("revoke")
    _client_args(revoke)
    revoke.add_argument("grant_id")
    revoke.set_defaults(fn=cmd_consent_revoke)
    listing = consent.add_parser("list")
    _client_args(listing)
    listing.add_argument("--subject", required=True)
    listing.set_defaults(fn=cmd_consent_list)


def _add_subject(sub: Any) -> None:
    """vaultctl subject ..."""
    subject = sub.add_parser("subject", help="subject rights (over gRPC)").add_subparsers(
        dest="subject_cmd", required=True
    )
    for name, help_text in (("restrict", "restrict processing"), ("lift", "lift a restriction")):
        p = subject.add_parser(name, help=help_text)
        _client_args(p)
        p.add_argument("--subject", required=True)
        p.set_defaults(fn=cmd_subject_restrict)
    export = subject.add_parser("export", help="every record, decrypted, as JSON lines")
    _client_args(export)
    export.add_argument("--subject", required=True)
    export.add_argument("--purpose", default="subject_access")
    export.add_argument("--out", required=True, help="output file (created 0600)")
    export.set_defaults(fn=cmd_subject_export)


def _add_shares(sub: Any) -> None:
    """vaultctl share ... and vaultctl event ..."""
    share = sub.add_parser("share", help="time-limited shares (over gRPC)").add_subparsers(
        dest="share_cmd", required=True
    )
    create = share.add_parser("create", help="share records with a recipient")
    _client_args(create)
    create.add_argument("--subject", required=True)
    create.add_argument("--recipient", required=True)
    create.add_argument("--purpose", required=True)
    create.add_argument("--record", action="append", required=True, metavar="RECORD_ID")
    create.add_argument("--field", action="append", required=True, metavar="FIELD")
    create.add_argument("--expires-at", type=float, default=None, help="unix time")
    create.add_argument("--event", help="ends --event-period-days after this event")
    create.add_argument("--event-period-days", type=float, default=None)
    create.set_defaults(fn=cmd_share_create)
    read = share.add_parser("read", help="read a share you received")
    _client_args(read)
    read.add_argument("share_id")
    read.add_argument("--content-dir", help="write content objects here (files 0600)")
    read.set_defaults(fn=cmd_share_read)
    revoke = share.add_parser("revoke")
    _client_args(revoke)
    revoke.add_argument("share_id")
    revoke.set_defaults(fn=cmd_share_revoke)
    listing = share.add_parser(
        "list", help="a subject's shares, or (without --subject) the shares you received"
    )
    _client_args(listing)
    listing.add_argument("--subject")
    listing.set_defaults(fn=cmd_share_list)
    event = sub.add_parser("event", help="business events").add_subparsers(
        dest="event_cmd", required=True
    )
    rec = event.add_parser("record", help="record a business event of a subject")
    _client_args(rec)
    rec.add_argument("--subject", required=True)
    rec.add_argument("--name", required=True)
    rec.add_argument("--at", type=float, default=None, help="unix time (default: now)")
    rec.set_defaults(fn=cmd_event_record)


def _add_blobs(sub: Any) -> None:
    """vaultctl blobs ..."""
    blobs = sub.add_parser("blobs", help="blob storage").add_subparsers(dest="blobs_cmd", required=True)
    sweep = blobs.add_parser("sweep", help="remove partial uploads and orphan blobs")
    sweep.add_argument("--min-age-seconds", type=float, default=None)
    sweep.set_defaults(fn=cmd_blobs_sweep)


def _add_lifecycle(sub: Any) -> None:
    """vaultctl retention ... and vaultctl hold ..."""
    retention = sub.add_parser("retention", help="retention rules").add_subparsers(
        dest="retention_cmd", required=True
    )
    sweep = retention.add_parser("sweep", help="shred every record its retention rule says is due")
    sweep.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    sweep.add_argument("--batch-size", type=int, default=200)
    sweep.set_defaults(fn=cmd_retention_sweep)
    dormancy = sub.add_parser("dormancy", help="dormant subjects").add_subparsers(
        dest="dormancy_cmd", required=True
    )
    dormancy.add_parser(
        "sweep", help="notices, dormancy and destruction of dormant subjects"
    ).set_defaults(fn=cmd_dormancy_sweep)
    hold = sub.add_parser("hold", help="legal holds (over gRPC)").add_subparsers(
        dest="hold_cmd", required=True
    )
    place = hold.add_parser("place")
    _client_args(place)
    place.add_argument("--subject", required=True)
    place.add_argument("--record", help="one record only")
    place.add_argument("--reason", required=True)
    place.add_argument("--case", required=True, help="case reference")
    place.set_defaults(fn=cmd_hold)
    release = hold.add_parser("release")
    _client_args(release)
    release.add_argument("hold_id")
    release.set_defaults(fn=cmd_hold)
    listing = hold.add_parser("list")
    _client_args(listing)
    listing.add_argument("--subject", required=True)
    listing.set_defaults(fn=cmd_hold)


def cmd_report(args: argparse.Namespace, env: Mapping[str, str], out: _Out) -> int:
    from vault_service.cli.report import gather, render_html

    if args.report_json:
        out = _Out(True)
    if not args.html and not args.json_out and not out.as_json:
        raise ConfigError("report: give --html PATH, --json-out PATH or --json")
    config = _config(args, env)
    _logging(config)
    assembly = _assembly(config, env)
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


def _add_verification(sub: Any) -> None:
    """vaultctl verify-deletion and verify-certificate"""
    verify = sub.add_parser(
        "verify-deletion", help="check every erasure; exit 0 all verified, 3 some pending, 1 any failed"
    )
    verify.add_argument("--out-dir", help="write the deletion certificates here")
    verify.set_defaults(fn=cmd_verify_deletion)
    cert = sub.add_parser("verify-certificate", help="check a deletion certificate offline")
    cert.add_argument("file")
    cert.add_argument("--public-key", help="the vault's signing key (hex) to pin")
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


def _add_record(sub: Any) -> None:
    """vaultctl record ... (smoke tests against a running server)"""
    rec = sub.add_parser("record", help="record calls against a running server")
    rec_sub = rec.add_subparsers(dest="record_cmd", required=True)
    up = rec_sub.add_parser("upload", help="stream a file as a record's content (progress bar)")
    _client_args(up)
    up.add_argument("--file", required=True)
    up.add_argument("--subject", help="for a new record")
    up.add_argument("--category", help="for a new record")
    up.add_argument("--record-id", help="upload a new version of this record instead")
    up.add_argument("--expected-version", type=int, default=0)
    up.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
    up.add_argument("--content-type", default="")
    up.add_argument("--idempotency-key", default="")
    up.set_defaults(fn=cmd_record_upload)
    down = rec_sub.add_parser("download", help="stream a record's content to a file")
    _client_args(down)
    down.add_argument("--id", required=True)
    down.add_argument("--purpose", required=True)
    down.add_argument("--out", required=True, help="written 0600, renamed into place when done")
    down.set_defaults(fn=cmd_record_download)
    for name in ("put", "get"):
        r = rec_sub.add_parser(name)
        r.add_argument("--address", default="127.0.0.1:50051")
        r.add_argument("--token-file", help="file holding the bearer token (else $VAULT_SERVICE_TOKEN)")
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

    serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="server processes sharing the port (SO_REUSEPORT); default: server.processes",
    )
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(fn=cmd_serve)
    _add_keys(sub)
    _add_audit(sub)
    _add_consent(sub)
    _add_subject(sub)
    _add_shares(sub)
    _add_blobs(sub)
    _add_lifecycle(sub)
    _add_verification(sub)
    _add_record(sub)
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
