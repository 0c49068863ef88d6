"""The breach scope beyond audit retention, over a real gRPC server: pruning (the server's own
``audit_prune`` job, ``[audit] retention_days``, default 730) deletes older entries, so a window
reaching back past the oldest retained entry of a pruned trail would be silently partial. The
scope says when its trail starts, whether it was pruned and whether the window is complete, in
the SDK result, the JSON, the text and the page (a visible warning), and so does the query's
own audit entry, which also records the filters it was asked with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.regressions import conftest as harness
from tests.regressions.conftest import ALL_TOKENS, DAY, Vault
from vault_service.cli.breach import iso
from vault_service.config import load_config
from vault_service.errors import Unavailable
from vault_service.jobs import run_once, server_jobs
from vault_service.service.breach_scope import Coverage

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text


def _prune(v: Vault) -> None:
    """One run of the server's audit_prune job, with the server's config and clock."""
    config = load_config(v.home / "vault.toml", {})
    assert config.audit.retention_days == 730  # the default: two years
    (job,) = [j for j in server_jobs(v.running.assembly, config) if j.name == "audit_prune"]
    assert run_once(job)


def _release(v: Vault, subject: str) -> str:
    app = v.client("app")
    rid = app.put_record(subject, "concern_text", {"text": "t", "budget": "1"}).record_id
    app.get_record(rid, "matching")
    return rid


def _scope_reasons(v: Vault) -> list[str]:
    entries, _ = v.client("auditor").query_audit(
        action="audit.breach_scope", decision="allow", page_size=1000
    )
    return [e["reason"] for e in entries]


def _cli(v: Vault, tmp_path: Path, start: float, end: float) -> tuple[dict[str, object], str, str]:
    """``vaultctl breach-scope`` of the window: its JSON, its text and its page."""
    token = tmp_path / "auditor.token"
    token.write_text(ALL_TOKENS["auditor"])
    common = ["--from", str(start), "--to", str(end), "--address", v.address, "--token-file", str(token)]
    page = tmp_path / "scope.html"
    as_json = v.vaultctl("breach-scope", *common, "--json")
    as_text = v.vaultctl("breach-scope", *common, "--html", str(page))
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    return json.loads(as_json.stdout), as_text.stdout, page.read_text()


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_window_before_the_oldest_retained_entry_of_a_pruned_trail_is_incomplete(
    vault: Vault, tmp_path: Path
) -> None:
    auditor = vault.client("auditor")
    t0 = vault.clock.now()
    _release(vault, "member-1")
    old = vault.pseudonym("member-1")
    # never pruned: every window is complete, however far back it starts
    fresh = auditor.breach_scope(0.0, vault.clock.now())
    assert (fresh.complete, fresh.trail_pruned) == (True, False)
    assert fresh.oldest_retained_at <= t0
    assert old in {s.subject_pseudonym for s in fresh.subjects}
    assert _scope_reasons(vault) == [f"breach scope queried: 0-{t0:.0f}; no filters; window complete"]

    vault.clock.advance(800 * DAY)  # past the two years of retention
    t1 = vault.clock.now()
    _release(vault, "member-2")
    _prune(vault)
    vault.clock.advance(3600)
    end = vault.clock.now()

    # the window reaches back into what was pruned: its releases are gone, and it says so
    scope = auditor.breach_scope(t0, end)
    assert (scope.complete, scope.trail_pruned, scope.oldest_retained_at) == (False, True, t1)
    assert old not in {s.subject_pseudonym for s in scope.subjects}
    assert scope.releases == 1
    # a window within what is retained is complete (its start may be the oldest entry's time)
    for start in (t1, t1 + 1):
        inside = auditor.breach_scope(start, end)
        assert (inside.complete, inside.trail_pruned, inside.oldest_retained_at) == (True, True, t1)
    assert not auditor.breach_scope(t1 - 1, end).complete

    # the JSON is the SDK's; the text and the page carry a visible warning
    data, text, page = _cli(vault, tmp_path, t0, end)
    totals = data["totals"]
    assert isinstance(totals, dict)
    assert (totals["complete"], totals["trail_pruned"], totals["oldest_retained_at"]) == (
        False,
        True,
        t1,
    )
    assert data == auditor.breach_scope(t0, end).as_dict()
    assert "WARNING: this scope is INCOMPLETE" in text and iso(t1) in text
    assert '<p class="bad" id="incomplete">WARNING: this scope is INCOMPLETE' in page
    assert iso(t1) in page and "(older ones were pruned)" in page
    data, text, page = _cli(vault, tmp_path, t1, end)
    assert data["totals"]["complete"] is True  # type: ignore[index]
    assert "WARNING" not in text and 'id="incomplete"' not in page
    assert f"audit trail from {iso(t1)}" in text

    # each query's audit entry says what it was told (those from before the prune are gone)
    incomplete = f"; no filters; window incomplete: trail pruned, oldest retained entry at {t1:.0f}"
    complete = "; no filters; window complete"
    assert _scope_reasons(vault) == [
        f"breach scope queried: {t0:.0f}-{end:.0f}{incomplete}",
        f"breach scope queried: {t1:.0f}-{end:.0f}{complete}",
        f"breach scope queried: {t1 + 1:.0f}-{end:.0f}{complete}",
        f"breach scope queried: {t1 - 1:.0f}-{end:.0f}{incomplete}",
        *[f"breach scope queried: {t0:.0f}-{end:.0f}{incomplete}"] * 3,  # the CLI twice, the SDK
        *[f"breach scope queried: {t1:.0f}-{end:.0f}{complete}"] * 2,
    ]


def test_the_query_is_audited_with_its_filters(vault: Vault) -> None:
    auditor = vault.client("auditor")
    _release(vault, "member-1")
    now = vault.clock.now()
    auditor.breach_scope(1.0, now, principal="app")
    auditor.breach_scope(1.0, now, principal="app", category="concern_text", purpose="matching")
    auditor.breach_scope(1.0, now, purpose="clinic_proposal")
    head = f"breach scope queried: 1-{now:.0f}"
    assert _scope_reasons(vault) == [
        f"{head}; filters principal=app; window complete",
        f"{head}; filters principal=app category=concern_text purpose=matching; window complete",
        f"{head}; filters purpose=clinic_proposal; window complete",
    ]


def test_a_prune_during_the_query_is_refused_rather_than_misaudited(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit entry is written before the read; a prune between the two would make it claim
    a complete window the answer no longer has: the query fails, to be asked again."""
    t0 = vault.clock.now()
    _release(vault, "member-1")
    vault.clock.advance(800 * DAY)
    _release(vault, "member-2")
    store = vault.service.store
    read = store.breach_scope

    def pruned_first(query: object) -> object:
        monkeypatch.setattr(store, "breach_scope", read)
        _prune(vault)
        return read(query)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "breach_scope", pruned_first)
    auditor = vault.client("auditor")
    with pytest.raises(Unavailable, match="pruned during the query"):
        auditor.breach_scope(t0, vault.clock.now())
    again = auditor.breach_scope(t0, vault.clock.now())
    assert (again.complete, again.trail_pruned) == (False, True)
    first, second = _scope_reasons(vault)
    assert first.endswith("window complete") and "window incomplete" in second


@pytest.mark.parametrize(
    ("oldest_seq", "oldest_at", "start", "want"),
    [
        (None, None, 0.0, Coverage(None, False, True)),  # an empty trail
        (1, 500.0, 0.0, Coverage(500.0, False, True)),  # never pruned
        (7, 500.0, 499.9, Coverage(500.0, True, False)),
        (7, 500.0, 500.0, Coverage(500.0, True, True)),
        (7, 500.0, 900.0, Coverage(500.0, True, True)),
    ],
)
def test_coverage(oldest_seq: int | None, oldest_at: float | None, start: float, want: Coverage) -> None:
    assert Coverage.of(oldest_seq, oldest_at, start) == want
