"""De-identified views: property tests with generated identifiers embedded in text, and the view
as the service releases it (identifier fields dropped, text scrubbed, purpose pseudonyms)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vault_service.policy.deidentify import scrub_text

local_part = st.from_regex(r"[a-z][a-z0-9._]{0,10}[a-z0-9]", fullmatch=True)
domain = st.from_regex(r"[a-z]{2,10}\.(com|co\.kr|kr|org|net)", fullmatch=True)
emails = st.builds(lambda a, b: f"{a}@{b}", local_part, domain)
sep = st.sampled_from(["-", " ", ".", ""])
d = st.integers(0, 9).map(str)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.lists(d, min_size=n, max_size=n).map("".join)


korean_mobiles = st.builds(
    lambda prefix, s, mid, last: f"{prefix}{s}{mid}{s}{last}",
    st.sampled_from(["010", "011", "016", "017", "018", "019", "+82 10", "+8210", "+82-10"]),
    sep,
    st.one_of(_digits(3), _digits(4)),
    _digits(4),
)
korean_landlines = st.builds(
    lambda area, s, mid, last: f"{area}{s}{mid}{s}{last}",
    st.sampled_from(["02", "031", "032", "051", "053", "064", "070"]),
    st.sampled_from(["-", " "]),
    st.one_of(_digits(3), _digits(4)),
    _digits(4),
)
international = st.builds(
    lambda cc, a, b, c: f"+{cc} {a} {b} {c}",
    st.sampled_from(["1", "44", "81", "86", "49"]),
    _digits(3),
    _digits(3),
    _digits(4),
)
rrns = st.builds(
    lambda yy, mm, dd, s, g, rest: f"{yy:02d}{mm:02d}{dd:02d}{s}{g}{rest}",
    st.integers(0, 99),
    st.integers(1, 12),
    st.integers(1, 28),
    st.sampled_from(["-", ""]),
    st.integers(1, 4),
    _digits(6),
)


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body + "0")):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return body + str((10 - total % 10) % 10)


cards = st.builds(
    lambda body, grouped: " ".join(body[i : i + 4] for i in range(0, len(body), 4)) if grouped else body,
    st.one_of(_digits(15), _digits(12)).map(lambda b: _luhn_complete("4" + b[1:])),
    st.booleans(),
)
filler = st.text(alphabet=st.sampled_from(list("abcdefghij 상담수술예산일정,.!?")), max_size=30)
identifiers = st.one_of(emails, korean_mobiles, korean_landlines, international, rrns, cards)


@settings(max_examples=300, deadline=None)
@given(before=filler, ident=identifiers, after=filler)
def test_embedded_identifiers_are_scrubbed(before: str, ident: str, after: str) -> None:
    text = f"{before} {ident} {after}"
    scrubbed = scrub_text(text)
    assert ident not in scrubbed
    digits = "".join(ch for ch in ident if ch.isdigit())
    if len(digits) >= 8:
        assert digits not in "".join(ch for ch in scrubbed if ch.isdigit() or ch == "]")


@settings(max_examples=100, deadline=None)
@given(st.lists(identifiers, min_size=2, max_size=5), filler)
def test_several_identifiers_in_one_text(idents: list[str], glue: str) -> None:
    text = f" {glue} ".join(idents)
    scrubbed = scrub_text(text)
    for ident in idents:
        assert ident not in scrubbed


def test_ordinary_numbers_survive() -> None:
    for text in [
        "budget 3000000 won",
        "stay 2026-12-01 to 2026-12-09",
        "order 1234567890123",
        "room 301, 2 nights",
        "dose 2.5 mg",
    ]:
        assert scrub_text(text) == text


def test_service_view_drops_identifiers_and_pseudonymizes(app: Any, running: Any) -> None:
    svc = running.service
    text = "Contact me at kim@example.com or 010-9876-5432; RRN 900101-1234567."
    rid = app.put_record("member-77", "concern_text", {"text": text, "budget": "5000000"}).record_id
    view = app.get_record(rid, "llm_analysis")
    assert view.fields["text"] == "Contact me at [EMAIL] or [PHONE]; RRN [RRN]."
    assert view.fields["budget"] == "5000000"
    p1 = view.info.subject_pseudonym
    assert p1 and "member-77" not in p1
    rid2 = app.put_record("member-77", "concern_text", {"text": "again"}).record_id
    assert app.get_record(rid2, "llm_analysis").info.subject_pseudonym == p1  # stable
    stats = app.get_record(rid, "statistics").info.subject_pseudonym
    assert stats and stats != p1  # two purposes do not link
    assert app.get_record(rid, "matching").info.subject_pseudonym == ""  # not de-identified
    pay = app.put_record(
        "member-77", "payment_record", {"amount": "10", "currency": "KRW", "provider_reference": "tx-1"}
    ).record_id
    assert set(app.get_record(pay, "statistics").fields) == {"amount", "currency"}
    reasons = [r.reason for r in svc.store.audit_rows() if r.action == "record.get"]
    assert "released de-identified" in reasons
