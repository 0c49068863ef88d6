"""Retention rules: shred every record whose rule says it is due, and forecast what will be.

Rules (per category, see docs/lifecycle.md): ``after_creation`` (a period after the record was
created; with ``survives_erasure`` it also applies to records kept by law after an erasure),
``after_event`` (a period after the subject's business event) and ``read_once`` with a deadline
(a period after creation, for a record never read: the read destroys it otherwise). ``read_once``
without one and ``until_erasure`` records are not swept here. Held records are left alone (a
hold stops the clock); the sweep is idempotent and safe with several processes sweeping at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from vault_service.audit.model import AuditRow, job_row
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym
from vault_service.errors import IntegrityError
from vault_service.lifecycle.events import BusinessEvents
from vault_service.lifecycle.shredding import Shredder
from vault_service.policy import Category, Policy
from vault_service.policy.model import RetentionRule
from vault_service.storage import RecordStore


def _label(rule: RetentionRule) -> str:
    p = rule.period
    span = f"{p / 86400:g}d" if p % 86400 == 0 else f"{p / 3600:g}h"
    return f"{rule.kind} {rule.event} {span}".replace("  ", " ")


def _candidates(
    store: RecordStore, category: Category, horizon: float, batch: int
) -> Iterator[list[tuple[str, bytes, float | None]]]:
    """Pages of the category's unheld records that may be due by ``horizon``."""
    rule = category.retention
    after = ""
    while True:
        rows = store.due_records(
            category.name,
            horizon - rule.period if rule.by_age else None,
            rule.event,
            after,
            batch,
            include_erased=rule.survives_erasure,
        )
        if not rows:
            return
        after = rows[-1][0]
        yield rows


def sweep_retention(
    store: RecordStore,
    policy: Policy,
    events: BusinessEvents,
    shredder: Shredder,
    clock: Clock,
    batch: int = 200,
    dry_run: bool = False,
) -> list[tuple[str, str]]:
    """Shred every record due at server time, in batches; returns [(record_id, rule)] shredded
    (or, with ``dry_run``, that would be)."""
    now = clock.now()
    done: list[tuple[str, str]] = []
    for category in policy.categories.values():
        rule = category.retention
        if not rule.swept:
            continue
        label = _label(rule)

        def audit(record_id: str, ref: bytes, label: str = label) -> AuditRow:
            return job_row(
                "job.retention",
                f"retention {label}",
                now,
                subject_pseudonym=audit_pseudonym(ref),
                record_id=record_id,
            )

        for rows in _candidates(store, category, now, batch):
            due = [
                (rid, ref)
                for rid, ref, _ in rows
                if rule.by_age or events.due(ref, rule.event, rule.period, now)
            ]
            if dry_run:
                done += [(rid, label) for rid, _ in due]
                continue
            done += [(rid, label) for rid in shredder.due_records(due, audit, "retention")]
    return done


def retention_forecast(
    store: RecordStore, policy: Policy, events: BusinessEvents, clock: Clock, horizon: float
) -> list[tuple[float, str]]:
    """When the sweep will shred each record due within ``horizon`` seconds from now: [(due
    time, category)], overdue ones included. Held records are left out (a hold stops the clock);
    so are after-event records whose event has not happened (no date is known). Reads only."""
    now = clock.now()
    out: list[tuple[float, str]] = []
    for category in policy.categories.values():
        rule = category.retention
        if not rule.swept:
            continue
        for rows in _candidates(store, category, now + horizon, 500):
            for record_id, ref, _ in rows:
                born: float | None
                if rule.by_age:
                    meta = store.get_meta(record_id)
                    born = meta.created_at if meta is not None else None
                else:
                    try:
                        born = events.time_of(ref, rule.event)
                    except IntegrityError:
                        born = now - rule.period  # an edited event is due now
                if born is not None and born + rule.period <= now + horizon:
                    out.append((born + rule.period, category.name))
    return sorted(out)
