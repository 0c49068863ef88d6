"""The compliance report for the privacy officer: ``vaultctl report --html PATH`` / ``--json``.

:func:`gather` reads what the vault can say about its promises, as counts and states, never as
identities: records per category with the retention rule that governs them, deletions due in
the coming days, erasures with their verification state and certificate ids, consent grants and
shares in force per purpose (and recipient, a service principal of the policy), the audit chain's
verification, and the root-key versions. :func:`render_html` makes one self-contained page of it
(no script, no external resource; a Content-Security-Policy forbids both), with SVG bar charts
where a person would rather look than read.
"""

from __future__ import annotations

import contextlib
import datetime
from collections import Counter
from typing import Any

from vault_service.app import Assembly
from vault_service.audit.model import OPERATOR_PRINCIPAL
from vault_service.cli.html_page import bar_chart_svg, esc, head, table
from vault_service.lifecycle.audit_log import ChainBroken, verify, write_checkpoint
from vault_service.lifecycle.rotation import inventory
from vault_service.policy.model import RetentionRule
from vault_service.storage import AuditRow

DAY = 86400.0
FORMAT = "vault-service/compliance-report/v1"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d")


def rule_text(rule: RetentionRule) -> str:
    """A retention rule in words."""
    p = rule.period
    days = (
        f"{p / DAY:g} days" if p >= DAY else f"{p / 3600:g} hours" if p >= 3600 else f"{p:.0f} seconds"
    )
    if rule.kind == "after_creation":
        text = f"shredded {days} after creation"
        return text + (" (kept after erasure: legal retention)" if rule.survives_erasure else "")
    if rule.kind == "after_event":
        return f"shredded {days} after the subject's event '{rule.event}'"
    if rule.kind == "read_once":
        return "destroyed when first read" + (f", or {days} after creation if never read" if p else "")
    return "kept until deleted or the subject is erased"


def gather(assembly: Assembly, horizon_days: int = 30) -> dict[str, Any]:
    """Everything the report shows, as plain data (the ``--json`` output). Audited as a job run."""
    svc = assembly.service
    now = svc.clock.now()
    counts = svc.store.records_by_category()
    categories = [
        {
            "name": c.name,
            "description": c.description,
            "records": counts.get(c.name, 0),
            "retention": rule_text(c.retention),
            "retention_kind": c.retention.kind,
        }
        for c in sorted(svc.policy.categories.values(), key=lambda c: c.name)
    ]
    forecast = svc.retention_forecast(horizon_days * DAY)
    days = [_day(now + i * DAY) for i in range(horizon_days)]
    per_day: dict[str, Counter[str]] = {d: Counter() for d in days}
    overdue = 0
    for due_at, category in forecast:
        if due_at <= now:
            overdue += 1
            per_day[days[0]][category] += 1
        elif _day(due_at) in per_day:
            per_day[_day(due_at)][category] += 1
    erasures: list[dict[str, Any]] = [
        {
            "erased_at": _iso(r.erased_at),
            "result": r.label,
            "certificate_id": r.certificate["certificate_id"] if r.certificate else None,
            "reasons": r.reasons,
        }
        for r in svc.verify_deletions()
    ]
    record_checks = svc.verify_record_deletions()
    by_cause: Counter[tuple[str, str]] = Counter((r.cause or "-", r.status) for r in record_checks)
    # sign the head first (it verifies what was written since the last signed head), so that the
    # report covers everything up to now, a fresh vault included; if the chain is broken, the
    # verification below names the first bad entry
    with contextlib.suppress(ChainBroken):
        write_checkpoint(assembly.store, assembly.checkpoints, svc.signing_key, now)
    audit = verify(assembly.store, assembly.checkpoints, svc.signing_key.public_key())
    versions = inventory(svc.store, svc.provider)
    shares = svc.store.live_shares_by_purpose()
    data: dict[str, Any] = {
        "format": FORMAT,
        "generated_at": _iso(now),
        "categories": categories,
        "deletions_due": {
            "horizon_days": horizon_days,
            "overdue": overdue,
            "total": sum(sum(c.values()) for c in per_day.values()),
            "by_day": [
                {"date": d, "count": sum(per_day[d].values()), "by_category": dict(per_day[d])}
                for d in days
            ],
        },
        "erasures": {
            "total": len(erasures),
            "by_result": dict(Counter(str(e["result"]).split(" ")[0] for e in erasures)),
            "items": erasures,
        },
        "record_deletions": {
            "total": len(record_checks),
            "by_result": dict(Counter(r.status for r in record_checks)),
            "by_cause": [
                {"cause": c, "result": s, "count": n} for (c, s), n in sorted(by_cause.items())
            ],
        },
        "grants_by_purpose": dict(sorted(svc.store.active_grants_by_purpose(now).items())),
        "shares": [{"purpose": p, "recipient": r, "count": n} for (p, r), n in sorted(shares.items())],
        "audit_chain": {
            "ok": audit.ok,
            "reason": audit.reason,
            "entries_checked": audit.entries_checked,
            "checkpoints_checked": audit.checkpoints_checked,
            "entries_after_latest_checkpoint": audit.unsigned_tail,
            "first_bad_entry": audit.first_bad_seq,
        },
        "keys": {
            "provider": svc.provider.name,
            "primary": svc.provider.primary_version(),
            "versions": [
                {
                    "version": v.version,
                    "provider_state": v.provider_state,
                    "lifecycle": v.lifecycle,
                    "primary": v.primary,
                    "subject_keys": v.subject_keys,
                    "service_keys": v.service_keys,
                    "destroy_at": _iso(v.destroy_at),
                }
                for v in versions
            ],
        },
    }
    svc.store.append_audit(
        AuditRow(
            at=now,
            principal=OPERATOR_PRINCIPAL,
            action="job.report",
            decision="allow",
            reason="compliance report generated",
        )
    )
    return data


# rendering ----------------------------------------------------------------------------------------
def render_html(data: dict[str, Any]) -> str:
    """One self-contained HTML page of :func:`gather`'s data."""
    cats = data["categories"]
    due = data["deletions_due"]
    er = data["erasures"]
    rd = data["record_deletions"]
    audit = data["audit_chain"]
    keys = data["keys"]
    audit_state = (
        '<span class="ok">verified</span>' if audit["ok"] else '<span class="bad">FAILED</span>'
    )
    cards = [
        ("records", sum(c["records"] for c in cats)),
        (f"deletions due in {due['horizon_days']} days", due["total"]),
        ("overdue now", due["overdue"]),
        ("erasures", er["total"]),
        ("grants in force", sum(data["grants_by_purpose"].values())),
        ("live shares", sum(s["count"] for s in data["shares"])),
    ]
    parts = [
        *head("vault-service compliance report"),
        "<h1>vault-service compliance report</h1>",
        f'<p class="muted">Generated {esc(data["generated_at"])} (server time, UTC). Counts and '
        "states only: this page names no person.</p>",
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in cards)
        + f'<div class="card"><b>{audit_state}</b>audit chain</div></div>',
        '<h2 id="records">Records by category and their retention rules</h2>',
        bar_chart_svg(
            "Records per category", [c["name"] for c in cats], [c["records"] for c in cats], False
        ),
        table(
            ["category", "records", "retention rule", "description"],
            [[c["name"], c["records"], c["retention"], c["description"]] for c in cats],
            {1},
        ),
        f'<h2 id="deletions">Deletions due in the next {due["horizon_days"]} days</h2>',
        f"<p>{due['total']} records will be shredded by the retention sweep"
        + (
            f', <span class="warn">{due["overdue"]} of them overdue now</span> (due and not yet '
            "swept; counted on the first day)"
            if due["overdue"]
            else ""
        )
        + ". Records under legal hold and records waiting for an event are not counted.</p>",
        bar_chart_svg(
            "Deletions due per day",
            [d["date"] for d in due["by_day"]],
            [d["count"] for d in due["by_day"]],
            True,
        ),
        table(
            ["date", "records due", "by category"],
            [
                [
                    d["date"],
                    d["count"],
                    ", ".join(f"{k}: {v}" for k, v in sorted(d["by_category"].items())),
                ]
                for d in due["by_day"]
                if d["count"]
            ],
            {1},
        ),
        '<h2 id="erasures">Erasures and their verification</h2>',
        "<p>"
        + (", ".join(f"{k}: {v}" for k, v in sorted(er["by_result"].items())) or "no erasures")
        + "</p>",
        table(
            ["erased at", "verification", "certificate id", "pending or failed because"],
            [
                [e["erased_at"], e["result"], e["certificate_id"] or "-", "; ".join(e["reasons"]) or "-"]
                for e in er["items"]
            ],
        ),
        '<h2 id="record-deletions">Records destroyed and their verification</h2>',
        f"<p>{rd['total']} records destroyed one by one (deleted, shredded by their retention rule,"
        " released by their read-once read), each checked like an erasure: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(rd["by_result"].items())) or "none")
        + ". Pending ones wait for the backups from before them to expire, or for a hold.</p>",
        table(
            ["cause", "verification", "records"],
            [[x["cause"], x["result"], x["count"]] for x in rd["by_cause"]],
            {2},
        ),
        '<h2 id="access">Consent grants and shares in force</h2>',
        table(
            ["purpose", "grants in force"],
            [[p, n] for p, n in data["grants_by_purpose"].items()],
            {1},
        ),
        table(
            ["purpose", "recipient", "live shares"],
            [[s["purpose"], s["recipient"], s["count"]] for s in data["shares"]],
            {2},
        ),
        '<h2 id="audit">Audit chain</h2>',
        f"<p>{audit_state}: {esc(audit['reason'])}. Entries checked: {audit['entries_checked']}; "
        f"signed checkpoints: {audit['checkpoints_checked']}; entries after the latest "
        f"checkpoint: {audit['entries_after_latest_checkpoint']}"
        + (f"; first bad entry: {audit['first_bad_entry']}" if audit["first_bad_entry"] else "")
        + ".</p>",
        '<h2 id="keys">Root-key versions</h2>',
        f"<p>Provider <b>{esc(keys['provider'])}</b>, primary version {esc(keys['primary'])}.</p>",
        table(
            [
                "version",
                "provider state",
                "lifecycle",
                "primary",
                "subject keys",
                "service keys",
                "destroy at",
            ],
            [
                [
                    v["version"],
                    v["provider_state"],
                    v["lifecycle"],
                    "yes" if v["primary"] else "",
                    v["subject_keys"],
                    v["service_keys"],
                    v["destroy_at"] or "-",
                ]
                for v in keys["versions"]
            ],
            {4, 5},
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
