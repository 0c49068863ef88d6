"""Two server processes (replicas) on one database, SQLite and PostgreSQL: an erasure on one takes
effect on the next read on the other, even though the other holds the subject key in its warm
cache; a consent revoked on one denies on the other at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, TOKENS, write_config
from tests.support.serve import start_serving, stop_serving
from vault_service.client import VaultClient
from vault_service.errors import NotFound


@pytest.fixture(params=BACKENDS)
def two_servers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    extra = {}
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        extra = {"storage__backend": '"postgres"', "storage__postgres_dsn": f'"{dsn}"'}
    config = write_config(tmp_path, keys__cache_max_age_seconds="3600.0", **extra)
    a, addr_a = start_serving(config)
    b, addr_b = start_serving(config)
    yield addr_a, addr_b
    for proc in (a, b):
        assert stop_serving(proc) == 0


def test_erasure_on_one_process_is_seen_by_the_other_at_once(two_servers: tuple[str, str]) -> None:
    addr_a, addr_b = two_servers
    with VaultClient(addr_a, TOKENS["app"]) as a, VaultClient(addr_b, TOKENS["app"]) as b:
        ids = [a.put_record("member-1", "concern_text", {"text": f"n{i}"}).record_id for i in range(5)]
        keep = a.put_record("member-2", "concern_text", {"text": "other"}).record_id
        for rid in ids:  # warm B's cache with member-1's subject key
            assert b.get_record(rid, "matching").fields["text"].startswith("n")
        assert a.erase_subject("member-1")
        for rid in ids:
            with pytest.raises(NotFound):
                b.get_record(rid, "matching")
        assert b.list_records("member-1").records == []
        assert b.get_record(keep, "matching").fields["text"] == "other"


def test_consent_revoked_on_one_process_denies_on_the_other(two_servers: tuple[str, str]) -> None:
    from vault_service.errors import PermissionDenied

    addr_a, addr_b = two_servers
    with VaultClient(addr_a, TOKENS["app"]) as a, VaultClient(addr_b, TOKENS["clinic"]) as b:
        rid = a.put_record("member-9", "concern_text", {"text": "for the clinic"}).record_id
        consent = a.grant_consent(
            "member-9",
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="match-9",
            grantee_principal="clinic",
        )
        share = a.create_share(
            "member-9", "clinic", "clinic_proposal", [rid], ["text"], expires_at=time.time() + 3600
        )
        (record,) = list(b.read_share(share.share_id))
        assert record.fields["text"] == "for the clinic"
        a.revoke_consent(consent.grant_id)  # the consent backs the share: the next read stops
        with pytest.raises(PermissionDenied):
            list(b.read_share(share.share_id))
        assert a.list_consents("member-9")[0].revoked_at is not None
