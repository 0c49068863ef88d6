"""Read-once with a deadline (issue 20): ``retention = { read_once = true, hours = N }`` is "used
once, and deleted N hours after creation if never used". Over a real server with the clock
advanced: the read destroys it before the deadline; the retention sweep shreds it after, through
the one shred path (ledgered, so a restore does not bring it back); a hold stops the clock; the
loader refuses every other setting beside read_once."""

from __future__ import annotations

import pytest

from tests.regressions import conftest as harness
from tests.regressions.conftest import Vault, read_once_policy_text
from vault_service.errors import ConfigError, NotFound
from vault_service.policy import load_policy

PHOTO = bytes(range(256)) * 40
HOUR = 3600.0

# the regression suite's vault (a real server on a fixed clock, backups and restores)
vault = harness.vault
clock = harness.clock


@pytest.fixture
def policy_text() -> str:
    return read_once_policy_text().replace(
        '[categories.face_photo]\ndescription = "A face photo for one simulation: content only, '
        'destroyed by the read that releases it."\ncontent = true\nretention = { read_once = true }',
        '[categories.face_photo]\ndescription = "A face photo: used once, or deleted after an hour."'
        "\ncontent = true\nretention = { read_once = true, hours = 1 }",
    )


def _put(vault: Vault) -> str:
    return str(vault.client("app").put_record("member-1", "face_photo", {}, content=PHOTO).record_id)


def _get(vault: Vault, rid: str) -> bytes:
    got = vault.client("app").get_record(rid, "simulation", include_content=True)
    return bytes(got.content or b"")


def test_the_policy_under_test_has_the_deadline(vault: Vault) -> None:
    rule = vault.service.policy.categories["face_photo"].retention
    assert (rule.kind, rule.period) == ("read_once", HOUR)


def test_a_read_before_the_deadline_destroys_it(vault: Vault) -> None:
    rid = _put(vault)
    vault.clock.advance(HOUR - 60)
    assert vault.service.sweep_retention() == []
    assert _get(vault, rid) == PHOTO
    with pytest.raises(NotFound):
        _get(vault, rid)


def test_never_read_it_is_shredded_after_the_deadline_and_stays_gone_after_a_restore(
    vault: Vault,
) -> None:
    rid = _put(vault)
    backup = vault.backup()
    vault.clock.advance(HOUR + 1)
    assert vault.service.sweep_retention() == [(rid, "read_once 1h")]
    with pytest.raises(NotFound):
        _get(vault, rid)
    assert vault.blob_files() == []
    vault.restore(backup)
    with pytest.raises(NotFound):
        _get(vault, rid)


def test_a_hold_stops_the_clock_and_its_release_lets_the_sweep_shred_it(vault: Vault) -> None:
    rid = _put(vault)
    hold = vault.client("legal").place_hold("member-1", "evidence", "case-21", record_id=rid)
    vault.clock.advance(2 * HOUR)
    assert vault.service.sweep_retention() == []
    vault.client("legal").release_hold(hold["hold_id"])
    assert vault.service.sweep_retention() == [(rid, "read_once 1h")]


def test_the_report_and_the_forecast_say_the_deadline(vault: Vault) -> None:
    from vault_service.cli.report import rule_text

    rule = vault.service.policy.categories["face_photo"].retention
    assert rule_text(rule) == "destroyed when first read, or 1 hours after creation if never read"
    _put(vault)
    (when, category), *_ = vault.service.retention_forecast(2 * HOUR)
    assert category == "face_photo" and when == pytest.approx(vault.clock.now() + HOUR)


BASE = """version = 1
[categories.face]
content = true
retention = { RULE }
[purposes.sim]
categories = ["face"]
"""


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('read_once = true, after = "creation", hours = 1', r"retention.after: read_once takes only"),
        (
            "read_once = true, survives_erasure = true",
            "retention.survives_erasure: read_once takes only days and/or hours",
        ),
        ("read_once = true, hours = 0", "retention: a read_once deadline needs a positive"),
        ("read_once = true, hours = -1", "retention: days and hours must be numbers >= 0"),
        ('read_once = true, days = "1"', "retention: days and hours must be numbers >= 0"),
        ("read_once = false, hours = 1", r"retention.read_once: must be true"),
    ],
)
def test_the_loader_refuses_what_a_deadline_cannot_mean(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"p.toml: categories.face.{message}"):
        load_policy(BASE.replace("RULE", rule), "p.toml")


def test_plain_read_once_and_a_day_deadline_load() -> None:
    plain = load_policy(BASE.replace("RULE", "read_once = true"), "p.toml")
    assert plain.categories["face"].retention.period == 0
    assert not plain.categories["face"].retention.swept
    daily = load_policy(BASE.replace("RULE", "read_once = true, days = 1"), "p.toml")
    assert (
        daily.categories["face"].retention.period == 86400 and daily.categories["face"].retention.swept
    )


def test_an_update_does_not_restart_the_deadline(vault: Vault) -> None:
    rid = _put(vault)
    vault.clock.advance(HOUR - 600)
    vault.client("app").update_record(rid, {}, content=PHOTO[::-1])
    vault.clock.advance(601)
    assert vault.service.sweep_retention() == [(rid, "read_once 1h")]
