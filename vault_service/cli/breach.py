"""vaultctl breach-scope: which subjects had which categories and fields released to whom, and
when, in a time window (a breach is scoped within 72 hours: PIPA Art. 34, GDPR Art. 33).

Contract: asks a running server over gRPC with an auditor's token (BreachScope, action
``audit.breach_scope``; the query is audited), like ``vaultctl audit query``. Prints a summary, or
with ``--json`` the scope as one JSON object; ``--html PATH`` writes it as a page in the
compliance report's style, every value escaped. Subjects are named by pseudonym only
(``vaultctl audit hash SUBJECT_ID`` gives the pseudonym of an id the application knows); no field
value is ever part of it. A window reaching back past the oldest retained audit entry of a pruned
trail (``[audit] retention_days``) is incomplete: the text and the page say so in a warning, the
JSON with ``totals.complete`` false.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.cli.common import Output, add_client_args, client_of
from vault_service.cli.html_page import bar_chart_svg, esc, head, table

UNRECORDED = "(not recorded)"


def when(text: str) -> float:
    """A time given on the command line: Unix seconds, or ISO 8601 (UTC unless it says)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "a time is Unix seconds or ISO 8601, such as 2026-03-01T09:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _names(value: list[str] | None) -> str:
    return UNRECORDED if value is None else ", ".join(value) or "-"


def trail_from(totals: Mapping[str, Any]) -> str:
    """When the audit trail starts (its oldest retained entry)."""
    at = totals["oldest_retained_at"]
    return "an unknown time" if at is None else iso(at)


def incomplete(totals: Mapping[str, Any]) -> str | None:
    """The warning of a scope the audit trail does not fully cover (None if it does)."""
    if totals["complete"]:
        return None
    if not totals["trail_pruned"]:
        return "WARNING: the server did not say whether its audit trail covers the whole window"
    return (
        "WARNING: this scope is INCOMPLETE: the audit trail was pruned and its oldest retained "
        f"entry is from {trail_from(totals)}, after the start of the window; "
        "releases before then are not in it (keep more with [audit] retention_days)"
    )


def summary(data: Mapping[str, Any]) -> str:
    """The scope in lines: one per subject, one per disclosure under it."""
    t = data["totals"]
    lines = [
        f"breach scope {iso(data['from'])} .. {iso(data['to'])}: {t['subjects']} subjects, "
        f"{t['releases']} releases of {t['records']} records"
        f" (audit trail from {trail_from(t)})"
    ]
    warning = incomplete(t)
    if warning:
        lines.append(warning)
    for s in data["subjects"]:
        lines.append(
            f"  {s['subject_pseudonym']}  {s['releases']} releases, {s['records']} records, "
            f"{iso(s['first_at'])} .. {iso(s['last_at'])}"
        )
        for d in s["disclosures"]:
            lines.append(
                f"    {d['category'] or UNRECORDED} [{_names(d['fields'])}] -> {d['principal']}"
                f" ({d['role'] or UNRECORDED}) {d['action']} {d['purpose']} x{d['releases']},"
                f" {iso(d['first_at'])} .. {iso(d['last_at'])}"
            )
    if t["unrecorded_releases"]:
        lines.append(
            f"({t['unrecorded_releases']} releases were audited before categories and fields "
            "were recorded: what they released is not known from the trail)"
        )
    return "\n".join(lines)


def render_html(data: Mapping[str, Any]) -> str:
    """One self-contained page of the scope (the compliance report's style)."""
    t = data["totals"]
    filters = ", ".join(f"{k} = {v}" for k, v in sorted(data["filters"].items()) if v) or "none"
    cards = [
        ("subjects", t["subjects"]),
        ("releases", t["releases"]),
        ("records", t["records"]),
        ("recipients", len(t["by_recipient"])),
        ("releases not itemized", t["unrecorded_releases"]),
        ("window covered", "complete" if t["complete"] else "INCOMPLETE"),
    ]
    cats = t["by_category"]
    warning = incomplete(t)
    rows = [
        [
            s["subject_pseudonym"],
            d["category"] or UNRECORDED,
            _names(d["fields"]),
            d["principal"],
            d["role"] or UNRECORDED,
            d["action"],
            d["purpose"],
            d["releases"],
            iso(d["first_at"]),
            iso(d["last_at"]),
        ]
        for s in data["subjects"]
        for d in s["disclosures"]
    ]
    parts = [
        *head("vault-service breach scope"),
        "<h1>Breach scope</h1>",
        *([f'<p class="bad" id="incomplete">{esc(warning)}</p>'] if warning else []),
        f'<p class="muted">Releases from {esc(iso(data["from"]))} to {esc(iso(data["to"]))}'
        f" (server time, UTC; both ends included). Filters: {esc(filters)}. The audit trail "
        f"holds entries from {esc(trail_from(t))}"
        f"{' (older ones were pruned)' if t['trail_pruned'] else ''}. Subjects are named "
        "by their audit pseudonym only (the application maps them back); fields by name, never "
        "by value.</p>",
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in cards)
        + "</div>",
        '<h2 id="categories">Releases by category</h2>',
        bar_chart_svg(
            "Releases per category",
            [c["category"] or UNRECORDED for c in cats],
            [c["releases"] for c in cats],
            False,
        ),
        table(
            ["category", "releases", "subjects"],
            [[c["category"] or UNRECORDED, c["releases"], c["subjects"]] for c in cats],
            {1, 2},
        ),
        '<h2 id="recipients">Releases by recipient</h2>',
        table(
            ["principal", "role", "releases", "subjects"],
            [
                [r["principal"], r["role"] or UNRECORDED, r["releases"], r["subjects"]]
                for r in t["by_recipient"]
            ],
            {2, 3},
        ),
        '<h2 id="subjects">Subjects and what was released</h2>',
        table(
            [
                "subject pseudonym",
                "category",
                "fields",
                "principal",
                "role",
                "action",
                "purpose",
                "releases",
                "first",
                "last",
            ],
            rows,
            {7},
        ),
    ]
    if t["unrecorded_releases"]:
        parts.append(
            f'<p class="warn">{esc(t["unrecorded_releases"])} releases were audited before '
            "categories and fields were recorded: the trail does not say what they released.</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def cmd_breach_scope(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        scope = client.breach_scope(
            args.start,
            args.end,
            principal=args.principal,
            category=args.category,
            purpose=args.purpose,
        )
    data = scope.as_dict()
    text = summary(data)
    if args.html:
        Path(args.html).write_text(render_html(data), encoding="utf-8")
        text += f"\nwritten to {args.html}"
    Output(out.as_json or args.scope_json).emit(data, text)
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl breach-scope ..."""
    p = sub.add_parser(
        "breach-scope",
        help="the subjects, categories and fields released to whom in a time window (auditor)",
    )
    p.add_argument("--from", dest="start", type=when, required=True, help="Unix seconds or ISO 8601")
    p.add_argument("--to", dest="end", type=when, required=True, help="Unix seconds or ISO 8601")
    p.add_argument("--principal", default="", help="only releases to this principal")
    p.add_argument("--category", default="", help="only records of this category")
    p.add_argument("--purpose", default="", help="only releases for this purpose")
    p.add_argument("--json", dest="scope_json", action="store_true", help="print the scope as JSON")
    p.add_argument("--html", metavar="PATH", help="write the scope as one self-contained HTML page")
    add_client_args(p)
    p.set_defaults(fn=cmd_breach_scope)
