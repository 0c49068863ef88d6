"""Request validation: times and durations are finite and in range, names and references are whole
matches (a trailing newline is not a valid id), media types have their shape, and errors repeat at
most a short, sanitized part of what the caller sent."""

from __future__ import annotations

import math

import pytest

from vault_service.errors import InvalidArgument, shown
from vault_service.ids import is_record_id, new_record_id
from vault_service.service import validate


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 253402300800.0, 1e300])
def test_times_out_of_range_are_refused(value: float) -> None:
    with pytest.raises(InvalidArgument):
        validate.time(value, "at")


@pytest.mark.parametrize("value", [0.0, 1_800_000_000.0, 253402300799.0])
def test_times_in_range_are_accepted(value: float) -> None:
    assert validate.time(value, "at") == value


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, -5.0, validate.MAX_DURATION * 2])
def test_durations_out_of_range_are_refused(value: float) -> None:
    with pytest.raises(InvalidArgument):
        validate.duration(value, "event_period")


def test_a_trailing_newline_is_not_part_of_a_valid_value() -> None:
    rid = new_record_id()
    assert is_record_id(rid) and not is_record_id(rid + "\n")
    for check, value in (
        (validate.event_name, "match_completed\n"),
        (lambda v: validate.reference(v, "evidence_reference"), "form-1\n"),
        (validate.content_type, "image/jpeg\n"),
    ):
        with pytest.raises(InvalidArgument):
            check(value)


@pytest.mark.parametrize("value", ["", "image/jpeg", "application/dicom", "text/plain; charset=utf-8"])
def test_media_types(value: str) -> None:
    validate.content_type(value)


@pytest.mark.parametrize("value", ["jpeg", "image/jpeg; my name is Kim", "a/" + "b" * 200, "image/ png"])
def test_not_media_types(value: str) -> None:
    with pytest.raises(InvalidArgument):
        validate.content_type(value)


def test_shown_caps_and_sanitizes() -> None:
    assert shown("field") == "'field'"
    long = shown("x" * 5000)
    assert len(long) == 66 and long.endswith("\u2026'")
    assert "\n" not in shown("a\nb") and "\x00" not in shown("a\x00b")
