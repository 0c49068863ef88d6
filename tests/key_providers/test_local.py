"""The local key provider: keyring file rules, versions, wrap/unwrap bound to a context."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vault_service.clock import FixedClock
from vault_service.crypto import Context, SubjectKey
from vault_service.errors import ConfigError, FailedPrecondition, IntegrityError
from vault_service.key_providers import LocalKeyProvider, WrappedKey, create_keyring

CTX = Context("subject-key", {"subject": "ab" * 16})


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "ring.json"
    create_keyring(path, None, 1000.0)
    return path


def test_created_mode_0600_and_refuses_overwrite(ring: Path) -> None:
    assert ring.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FailedPrecondition, match="refusing to overwrite"):
        create_keyring(ring, None, 0.0)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_refuses_group_or_world_accessible(ring: Path, mode: int) -> None:
    os.chmod(ring, mode)
    with pytest.raises(ConfigError, match="accessible by group or others"):
        LocalKeyProvider(ring)


def test_missing_and_corrupt_keyrings(tmp_path: Path, ring: Path) -> None:
    with pytest.raises(ConfigError, match="keys init"):
        LocalKeyProvider(tmp_path / "nope.json")
    ring.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        LocalKeyProvider(ring)
    ring.write_text(json.dumps({"format": "vault-service-keyring/v1", "primary": "1", "versions": []}))
    with pytest.raises(ConfigError, match="non-empty 'versions'"):
        LocalKeyProvider(ring)


def test_wrap_unwrap_bound_to_context_and_version(ring: Path) -> None:
    provider = LocalKeyProvider(ring)
    key = SubjectKey.generate()
    wrapped = provider.wrap(key, CTX)
    assert wrapped.root_version == "1"
    assert provider.unwrap(wrapped, CTX, SubjectKey) == key
    with pytest.raises(IntegrityError):
        provider.unwrap(wrapped, CTX.with_items(subject="cd" * 16), SubjectKey)
    with pytest.raises(IntegrityError):
        provider.unwrap(WrappedKey("1", wrapped.ciphertext[:-1]), CTX, SubjectKey)
    with pytest.raises(FailedPrecondition):
        provider.unwrap(WrappedKey("9", wrapped.ciphertext), CTX, SubjectKey)


def test_rotate_rewrap_and_reload_by_another_process_view(ring: Path) -> None:
    clock = FixedClock(5000.0)
    server_view = LocalKeyProvider(ring, clock=clock)
    operator_view = LocalKeyProvider(ring, clock=clock)
    key = SubjectKey.generate()
    old = server_view.wrap(key, CTX)
    assert operator_view.rotate() == "2"
    versions = operator_view.versions()
    assert [(v.version, v.primary) for v in versions] == [("1", False), ("2", True)]
    assert versions[1].created_at == 5000.0
    # the server sees version 2 on first use (reload on unknown version)
    new = operator_view.rewrap(old, CTX)
    assert new.root_version == "2"
    assert server_view.unwrap(new, CTX, SubjectKey) == key
    with pytest.raises(IntegrityError):
        server_view.unwrap(WrappedKey("1", new.ciphertext), CTX, SubjectKey)
    assert ring.stat().st_mode & 0o777 == 0o600


def test_sealed_keyring(tmp_path: Path) -> None:
    path = tmp_path / "sealed.json"
    create_keyring(path, b"pass phrase", 0.0)
    doc = json.loads(path.read_text())
    assert set(doc) == {"format", "sealed"}
    provider = LocalKeyProvider.from_env(path, "PW", {"PW": "pass phrase"})
    key = SubjectKey.generate()
    assert provider.unwrap(provider.wrap(key, CTX), CTX, SubjectKey) == key
    provider.rotate()
    assert "material" not in path.read_text()
    with pytest.raises(ConfigError, match="wrong keyring passphrase"):
        LocalKeyProvider.from_env(path, "PW", {"PW": "nope"})
    with pytest.raises(ConfigError, match="sealed"):
        LocalKeyProvider.from_env(path, "PW", {})


def test_provider_repr_has_no_material(ring: Path) -> None:
    provider = LocalKeyProvider(ring)
    material = json.loads(ring.read_text())["versions"][0]["material"]
    assert material not in repr(provider) and material not in repr(provider._ring)
