"""Rotation: rewrap (resumable, compare-and-set), inventory, retire, two-step destroy; on the local
provider and a real OpenBao server, through the real service and store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import test_policy_text
from tests.key_providers.conftest import transit_provider
from tests.support.openbao import OpenBaoServer
from vault_service.clock import FixedClock
from vault_service.crypto import SubjectKey
from vault_service.crypto.context import subject_key_context
from vault_service.errors import FailedPrecondition
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.key_providers.base import KeyProvider
from vault_service.lifecycle import rotation
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.policy import Principal, load_policy
from vault_service.service import CallContext, VaultService
from vault_service.storage import FilesystemBlobStore, SqliteRecordStore

CALL = CallContext(Principal("app", "application"), "test")


@pytest.fixture(params=["local", "openbao"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VaultService]:
    provider: KeyProvider
    if request.param == "local":
        create_keyring(tmp_path / "ring.json", None, 0.0)
        provider = LocalKeyProvider(tmp_path / "ring.json")
    else:
        server = OpenBaoServer().start()
        request.addfinalizer(server.stop)
        provider = transit_provider(server.url, server.token, "derived")
    store = SqliteRecordStore(tmp_path / "vault.db")
    store.migrate()
    svc = VaultService(
        store,
        FilesystemBlobStore(tmp_path / "blobs"),
        provider,
        load_policy(test_policy_text()),
        FixedClock(),
        ledger=DestructionLedger(tmp_path / "ledger.jsonl"),
    )
    yield svc
    store.close()


def _fill(svc: VaultService, n: int) -> list[str]:
    return [
        svc.put_record(CALL, f"member-{i}", "concern_text", {"text": f"note {i}"})[0] for i in range(n)
    ]


def test_rewrap_moves_every_key_without_touching_data(service: VaultService) -> None:
    ids = _fill(service, 25)
    payloads_before = service.store.get_record(ids[0]).payloads  # type: ignore[union-attr]
    old_primary = service.provider.primary_version()
    new_primary = service.provider.rotate()
    assert service.store.subject_keys_by_root_version() == {old_primary: 25}
    summary = rotation.rewrap_keys(service.store, service.provider, batch_size=7)
    assert (summary.rewrapped, summary.failed, summary.remaining) == (25, 0, 0)
    assert service.store.subject_keys_by_root_version() == {new_primary: 25}
    assert service.store.service_keys_by_root_version() == {new_primary: 2}
    assert service.store.get_record(ids[0]).payloads == payloads_before  # type: ignore[union-attr]
    service.cache.clear()
    for i, rid in enumerate(ids):
        assert service.get_record(CALL, rid, "matching").fields["text"] == f"note {i}"


def test_rewrap_is_resumable(service: VaultService) -> None:
    _fill(service, 30)
    service.provider.rotate()
    progress: list[tuple[int, int]] = []
    first = rotation.rewrap_keys(
        service.store,
        service.provider,
        batch_size=4,
        max_keys=10,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert first.rewrapped == 10 and first.remaining == 20
    assert progress[-1] == (10, 30)
    second = rotation.rewrap_keys(service.store, service.provider, batch_size=4)
    assert second.rewrapped == 20 and second.remaining == 0
    assert rotation.rewrap_keys(service.store, service.provider).rewrapped == 0


def test_rewrap_skips_a_key_erased_meanwhile(service: VaultService) -> None:
    _fill(service, 3)
    service.provider.rotate()
    ref = service.subject_ref("member-1")
    (_, wrapped, _), *_ = [
        r
        for r in service.store.subject_keys_not_at(service.provider.primary_version(), 10, None)
        if r[0] == ref
    ]
    service.erase_subject(CALL, "member-1")
    fresh = service.provider.rewrap(wrapped, subject_key_context(ref))
    assert service.store.replace_subject_key(ref, wrapped, fresh, provider="local") is False
    assert service.store.get_subject_key(ref) is None


def test_tampered_key_does_not_stop_rotation(service: VaultService) -> None:
    _fill(service, 5)
    service.provider.rotate()
    ref = service.subject_ref("member-2")
    wrapped = service.store.get_subject_key(ref)
    assert wrapped is not None
    forged = type(wrapped)(wrapped.root_version, wrapped.ciphertext[:-2] + b"AA")
    service.store.replace_subject_key(ref, wrapped, forged, provider="local")
    summary = rotation.rewrap_keys(service.store, service.provider, batch_size=10)
    assert (summary.rewrapped, summary.failed, summary.remaining) == (4, 1, 1)


def test_retire_mark_destroy_lifecycle(service: VaultService) -> None:
    ids = _fill(service, 5)
    old = service.provider.primary_version()
    backup_of_key = service.store.get_subject_key(service.subject_ref("member-0"))
    service.provider.rotate()
    with pytest.raises(FailedPrecondition, match="rewrap first"):
        rotation.retire(service.store, service.provider, old, 1.0)
    with pytest.raises(FailedPrecondition, match="retired before"):
        rotation.mark_for_destruction(service.store, service.provider, old, 1.0)
    with pytest.raises(FailedPrecondition, match="primary"):
        rotation.retire(service.store, service.provider, service.provider.primary_version(), 1.0)
    rotation.rewrap_keys(service.store, service.provider)
    with pytest.raises(FailedPrecondition, match="not marked"):
        rotation.destroy(service.store, service.provider, old, 2.0)
    assert rotation.retire(service.store, service.provider, old, 2.0).lifecycle == "retired"
    with pytest.raises(FailedPrecondition, match="not marked"):
        rotation.destroy(service.store, service.provider, old, 3.0)
    rotation.mark_for_destruction(service.store, service.provider, old, 3.0)
    result = rotation.destroy(service.store, service.provider, old, 4.0)
    assert result.version == old
    status = {s.version: s for s in rotation.inventory(service.store, service.provider)}
    assert status[old].lifecycle == "destroyed" and status[old].in_use == 0
    # live data still reads; a backup's copy of the old wrapped key no longer unwraps
    service.cache.clear()
    assert service.get_record(CALL, ids[0], "matching").fields["text"] == "note 0"
    assert backup_of_key is not None
    with pytest.raises(FailedPrecondition):
        service.provider.unwrap(
            backup_of_key, subject_key_context(service.subject_ref("member-0")), SubjectKey
        )
    audit = [(r.action, r.reason) for r in service.store.audit_rows()]
    assert ("keys.destroy", f"version {old}: destroyed") in audit
