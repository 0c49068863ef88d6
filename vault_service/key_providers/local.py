"""The local key provider: root keys in a versioned keyring file under ``keys/``.

File format (JSON, mode 0600, refused when group- or world-accessible)::

    {"format": "vault-service-keyring/v1", "primary": "2",
     "versions": [{"version": "1", "state": "active", "created_at": 1.7e9, "material": "<b64>"}, ...]}

or, sealed with a passphrase taken from the environment::

    {"format": "vault-service-keyring/v1", "sealed": {"kdf": "scrypt", ..., "ciphertext": "<b64>"}}

Wrapping is AES-256-GCM (``vault_service.crypto.keywrap``) under the version's material with the
context plus the version as associated data. Writes are atomic (temp file, fsync, rename, fsync dir).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.clock import Clock, SystemClock
from vault_service.crypto import Context, RootKeyMaterial, SecretKey, unwrap_key, wrap_key
from vault_service.crypto.passphrase import open_with_passphrase, seal_with_passphrase
from vault_service.durable import replace_file
from vault_service.errors import ConfigError, FailedPrecondition, IntegrityError, shown
from vault_service.key_providers.base import (
    DestroyResult,
    KeyProvider,
    KeyState,
    KeyVersion,
    WrappedKey,
)

FORMAT = "vault-service-keyring/v1"
_SEAL_AAD = FORMAT.encode()


class _Raw(SecretKey):
    __slots__ = ()
    _label = "WrappedMaterial"


def _check_permissions(path: Path) -> None:
    st = path.stat()
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path}: keyring is accessible by group or others (mode {stat.filemode(st.st_mode)});"
            f" run: chmod 600 {path}"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ConfigError(f"{path}: keyring is owned by another user (uid {st.st_uid})")


class LocalKeyring:
    """The parsed keyring document. Holds root-key material; never printed."""

    def __init__(self, primary: str, versions: list[dict[str, Any]]) -> None:
        self.primary = primary
        self.versions = versions

    def __repr__(self) -> str:
        return f"LocalKeyring(primary={self.primary!r}, {len(self.versions)} versions)"

    def material(self, version: str) -> RootKeyMaterial | None:
        for v in self.versions:
            if v["version"] == version and v.get("material"):
                return RootKeyMaterial(base64.b64decode(v["material"]))
        return None

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "primary": self.primary, "versions": self.versions}

    @staticmethod
    def from_json(doc: Any, where: str) -> LocalKeyring:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a {FORMAT} file")
        versions = doc.get("versions")
        primary = doc.get("primary")
        if not isinstance(versions, list) or not versions or not isinstance(primary, str):
            raise ConfigError(f"{where}: keyring needs 'primary' and a non-empty 'versions' list")
        for i, v in enumerate(versions):
            if not isinstance(v, dict) or not isinstance(v.get("version"), str):
                raise ConfigError(f"{where}: versions[{i}] needs a string 'version'")
            if v.get("state") not in {s.value for s in KeyState}:
                raise ConfigError(f"{where}: versions[{i}].state is not a known state")
        if not any(v["version"] == primary and v.get("material") for v in versions):
            raise ConfigError(f"{where}: primary version {primary!r} has no key material")
        return LocalKeyring(primary, versions)


def create_keyring(path: Path, passphrase: bytes | None, now: float) -> None:
    """Create a new keyring with one version; refuses to overwrite an existing file."""
    if path.exists():
        raise FailedPrecondition(f"{path} already exists; refusing to overwrite a keyring")
    path.parent.mkdir(parents=True, exist_ok=True)
    material = RootKeyMaterial.generate()
    ring = LocalKeyring(
        "1",
        [
            {
                "version": "1",
                "state": KeyState.ACTIVE.value,
                "created_at": now,
                "material": base64.b64encode(material.unsafe_bytes()).decode(),
            }
        ],
    )
    _save(path, ring, passphrase)


def _save(path: Path, ring: LocalKeyring, passphrase: bytes | None) -> None:
    body = json.dumps(ring.to_json(), sort_keys=True).encode()
    if passphrase:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "sealed": seal_with_passphrase(passphrase, body, _SEAL_AAD),
        }
        body = json.dumps(doc, sort_keys=True).encode()
    replace_file(path, body)


def load_keyring(path: Path, passphrase: bytes | None) -> LocalKeyring:
    """Read and check a keyring file (permissions, format, passphrase)."""
    if not path.exists():
        raise ConfigError(f"{path}: keyring not found; create it with: vaultctl keys init")
    _check_permissions(path)
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        raise ConfigError(f"{path}: keyring is not valid JSON") from None
    if isinstance(doc, dict) and "sealed" in doc:
        if not passphrase:
            raise ConfigError(f"{path}: keyring is sealed; set its passphrase in the environment")
        try:
            doc = json.loads(open_with_passphrase(passphrase, doc["sealed"], _SEAL_AAD))
        except IntegrityError:
            raise ConfigError(f"{path}: wrong keyring passphrase (or the file was altered)") from None
    return LocalKeyring.from_json(doc, str(path))


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class LocalKeyProvider(KeyProvider):
    """Root keys from a local keyring file. Another process (``vaultctl keys rotate``, ``keys
    destroy``) rewrites the file atomically; this one re-reads it whenever the file changed
    (one ``stat`` per wrap or version query), so a running server never wraps under a version
    the operator has moved away from."""

    name = "local"

    def __init__(self, path: Path, passphrase: bytes | None = None, clock: Clock | None = None) -> None:
        super().__init__()
        self._path = path
        self._clock = clock or SystemClock()
        self._passphrase = passphrase
        self._lock = threading.Lock()
        self._seen = _identity(path) if path.exists() else (0, 0, 0)
        self._ring = load_keyring(path, passphrase)

    @classmethod
    def from_env(
        cls, path: Path, passphrase_env: str, env: Mapping[str, str], clock: Clock | None = None
    ) -> LocalKeyProvider:
        """Open with the passphrase (if any) read from ``env[passphrase_env]``."""
        secret = env.get(passphrase_env, "")
        return cls(path, secret.encode() if secret else None, clock)

    def reload(self) -> None:
        """Re-read the keyring file."""
        seen = _identity(self._path)
        ring = load_keyring(self._path, self._passphrase)
        with self._lock:
            self._ring, self._seen = ring, seen

    def refresh(self) -> None:
        """Re-read the keyring file if another process changed it."""
        try:
            changed = _identity(self._path) != self._seen
        except OSError:
            return  # unreadable now: the next use reports it
        if changed:
            self.reload()

    def primary_version(self) -> str:
        self.refresh()
        return self._ring.primary

    def versions(self) -> list[KeyVersion]:
        self.refresh()
        ring = self._ring
        return [
            KeyVersion(
                v["version"],
                KeyState(v["state"]),
                float(v["created_at"]),
                v["version"] == ring.primary,
            )
            for v in ring.versions
        ]

    def rotate(self) -> str:
        with self._lock:
            ring = load_keyring(self._path, self._passphrase)
            new = str(max(int(v["version"]) for v in ring.versions) + 1)
            material = RootKeyMaterial.generate()
            ring.versions.append(
                {
                    "version": new,
                    "state": KeyState.ACTIVE.value,
                    "created_at": self._clock.now(),
                    "material": base64.b64encode(material.unsafe_bytes()).decode(),
                }
            )
            ring.primary = new
            _save(self._path, ring, self._passphrase)
            self._ring, self._seen = ring, _identity(self._path)
        return new

    def destroy_version(self, version: str) -> DestroyResult:
        """Remove the version's material from the keyring file (atomically rewritten)."""
        with self._lock:
            ring = load_keyring(self._path, self._passphrase)
            if version == ring.primary:
                raise FailedPrecondition("the primary root version cannot be destroyed")
            entry = next((v for v in ring.versions if v["version"] == version), None)
            if entry is None:
                raise FailedPrecondition(f"unknown root version {shown(version)}")
            entry["material"] = ""
            entry["state"] = KeyState.DESTROYED.value
            entry["destroyed_at"] = self._clock.now()
            _save(self._path, ring, self._passphrase)
            self._ring, self._seen = ring, _identity(self._path)
        return DestroyResult(
            version,
            KeyState.DESTROYED,
            entry["destroyed_at"],
            "key material removed from the keyring file",
        )

    def _material(self, version: str) -> RootKeyMaterial:
        material = self._ring.material(version)
        if material is None:
            self.reload()
            material = self._ring.material(version)
        if material is None:
            raise FailedPrecondition("root key version is not available (destroyed or unknown)")
        return material

    def _encrypt(self, plaintext: bytes, context: Context) -> tuple[str, bytes]:
        self.refresh()
        version = self._ring.primary
        kek = self._material(version)
        return version, wrap_key(kek, _Raw(plaintext), context.with_items(root_version=version))

    def _decrypt(self, wrapped: WrappedKey, context: Context) -> bytes:
        self.refresh()  # a version destroyed by another process is gone here too
        kek = self._material(wrapped.root_version)
        raw = unwrap_key(
            kek, wrapped.ciphertext, context.with_items(root_version=wrapped.root_version), _Raw
        )
        return raw.unsafe_bytes()
