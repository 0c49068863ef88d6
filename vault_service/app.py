"""The composition root: builds the vault once from a :class:`~vault_service.config.Config`, for
the server, the CLI and the compliance report alike.

:func:`build_service` opens storage (migrating it), the blob store, the key provider and the
policy, wires them into a :class:`~vault_service.service.VaultService`, and makes the store agree
with the destruction ledger before anything is served (a restored backup must not bring back what
was destroyed). No network is opened here; :mod:`vault_service.rpc.server` serves what this builds.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from vault_service.audit.checkpoints import CheckpointStore, FilesystemCheckpointStore
from vault_service.audit.witness import DirectoryWitness, Witness
from vault_service.clock import Clock, RehearsalClock, SystemClock
from vault_service.config import Config
from vault_service.crypto.derive import audit_pending_mac
from vault_service.crypto.keys import IndexKey
from vault_service.errors import ConfigError
from vault_service.key_providers.base import KeyProvider
from vault_service.key_providers.cache import CacheLimits, SubjectKeyCache
from vault_service.key_providers.factory import build_provider
from vault_service.lifecycle.ledger import DestructionLedger, LedgerTampered
from vault_service.lifecycle.ledger_proof import WitnessedLedger
from vault_service.lifecycle.witnessing import Witnessing
from vault_service.logs import fields
from vault_service.policy import Policy, Principal, PrincipalEntry, load_policy
from vault_service.policy.model import token_digest
from vault_service.security_events import DenialWatch
from vault_service.service import Limits, VaultService
from vault_service.storage import BlobStore, FilesystemBlobStore, RecordStore, TracedBlobStore
from vault_service.storage.factory import open_migrated_store

log = logging.getLogger("vault_service.app")

#: the principal of the development token (``make run``)
DEV_PRINCIPAL = "developer"
_DAY = 86400.0


def is_loopback(listen: str) -> bool:
    """Whether a ``host:port`` listens on a loopback address only."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev_token_for(config: Config) -> str | None:
    """The development token, if ``server.dev_token_file`` is set (loopback only): read from the
    file, or created in it. Worker processes share it because their supervisor creates it first."""
    if not config.server.dev_token_file:
        return None
    if not is_loopback(config.server.listen):
        raise ConfigError("server.dev_token_file is only allowed on a loopback address")
    path = config.path(config.server.dev_token_file)
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path}: development token file must be mode 0600")
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "dev-" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def clock_for(config: Config) -> Clock:
    """The vault's clock: the system clock, or with ``server.dev_clock_file`` (loopback only) the
    rehearsal clock that ``vaultctl dev advance`` moves forward."""
    if not config.server.dev_clock_file:
        return SystemClock()
    if not is_loopback(config.server.listen):
        raise ConfigError("server.dev_clock_file is only allowed on a loopback address")
    return RehearsalClock(config.path(config.server.dev_clock_file))


def build_blob_store(config: Config, env: Mapping[str, str]) -> BlobStore:
    """The configured blob store, its calls traced (spans only while tracing is on)."""
    st = config.storage
    if st.blob_backend == "s3":
        if not st.s3_bucket:
            raise ConfigError('storage.s3_bucket: required with blob_backend = "s3"')
        from vault_service.storage.s3 import S3BlobStore

        s3 = S3BlobStore(
            st.s3_bucket,
            prefix=st.s3_prefix,
            endpoint_url=st.s3_endpoint_url or None,
            region=st.s3_region,
            env=env,
        )
        return TracedBlobStore(s3, "s3")
    return TracedBlobStore(FilesystemBlobStore(config.path(st.blob_dir)), "filesystem")


def load_policy_file(config: Config) -> Policy:
    """Read and validate the policy file named by the config."""
    try:
        text = config.policy_path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{config.policy_path}: policy file not found") from None
    return load_policy(text, str(config.policy_path))


def open_store(config: Config) -> RecordStore:
    """The configured record store, migrated (for commands that need only the store)."""
    return open_migrated_store(config)


def open_provider(config: Config, env: Mapping[str, str], clock: Clock | None = None) -> KeyProvider:
    """The configured key provider (for commands that need only the provider)."""
    return build_provider(config, env, clock or clock_for(config))


def s3_location(value: str) -> tuple[str, str] | None:
    """(bucket, key prefix) of an ``s3://bucket/prefix/`` setting (``[lifecycle] ledger_path``,
    ``[witness] directory``); None for a path."""
    if not value.startswith("s3://"):
        return None
    bucket, _, prefix = value.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"{value}: expected s3://bucket/prefix/")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def open_ledger(config: Config, env: Mapping[str, str] | None = None) -> DestructionLedger:
    """The destruction ledger named by the config (kept apart from the data directory): a file,
    or an S3-compatible bucket when ``[lifecycle] ledger_path`` is ``s3://bucket/prefix/``."""
    lc = config.lifecycle
    where = s3_location(lc.ledger_path)
    if where is None:
        return DestructionLedger(config.path(lc.ledger_path))
    from vault_service.audit.s3_objects import Bucket, s3_client
    from vault_service.lifecycle.ledger_s3 import S3LedgerStore

    client = s3_client(
        endpoint_url=lc.ledger_s3_endpoint_url or None,
        env=env if env is not None else os.environ,
        timeout_seconds=10.0,
    )
    return DestructionLedger(S3LedgerStore(Bucket(client, *where)))


@dataclass
class Assembly:
    """Everything :func:`build_service` made, so that callers can use and close it."""

    service: VaultService
    store: RecordStore
    checkpoints: CheckpointStore
    dev_token: str | None = None
    #: both logs' checkpoints and their witness (the sequencer, the start-up and live checks)
    witnessing: Witnessing | None = None

    def close(self) -> None:
        self.store.close()


def build_service(
    config: Config,
    env: Mapping[str, str],
    clock: Clock | None = None,
    *,
    store: RecordStore | None = None,
) -> Assembly:
    """Build the vault from ``config`` (see the module docstring). ``store``, if given, is used
    instead of the configured one (already migrated; tests wrap a store to inject faults)."""
    clock = clock or clock_for(config)
    policy = load_policy_file(config)
    dev_token = dev_token_for(config)
    if dev_token is not None:
        if config.server.dev_role not in policy.roles:
            raise ConfigError(f"server.dev_role: unknown role {config.server.dev_role!r}")
        policy = policy.with_principal(
            PrincipalEntry(Principal(DEV_PRINCIPAL, config.server.dev_role), token_digest(dev_token))
        )
    store = store or open_store(config)
    blobs = build_blob_store(config, env)
    blobs.remove_partials(config.storage.partial_upload_max_age_seconds)
    provider = open_provider(config, env, clock)
    cache = SubjectKeyCache(
        CacheLimits(
            max_entries=config.keys.cache_max_entries,
            max_age_seconds=config.keys.cache_max_age_seconds,
            max_uses=config.keys.cache_max_uses,
        ),
        clock,
    )
    limits = Limits(
        max_content_bytes=max(config.server.max_message_bytes - 64 * 1024, 0),
        max_object_bytes=config.storage.max_object_bytes,
    )
    ledger = open_ledger(config, env)
    lc = config.lifecycle
    checkpoints = FilesystemCheckpointStore(config.path(config.audit.checkpoint_path))
    service = VaultService(
        store,
        blobs,
        provider,
        policy,
        clock,
        limits,
        cache,
        ledger=ledger,
        schedule=(lc.rotate_every_days * _DAY, lc.backup_window_days * _DAY),
        checkpoints=checkpoints,
    )
    attach_audit_mac(store, service.keys.index_key)
    service.denials = DenialWatch(
        config.security.repeated_denials_threshold, config.security.repeated_denials_window_seconds
    )
    witnessing = Witnessing(
        store,
        ledger,
        checkpoints,
        lambda: service.signing_key,
        service.integrity,
        open_witness(config, env),
        config.audit.origin,
    )
    if witnessing.ledger_sync is not None:  # certificates prove against witnessed checkpoints
        sync = witnessing.ledger_sync
        service.verifier.witnessed_ledger = WitnessedLedger(sync.kept_checkpoint, sync.publish)
    try:
        restored = witnessing.startup()  # the ledger repaired from the witness if it must be
    except LedgerTampered as exc:
        raise ConfigError(f"{ledger.where}: {exc}; refusing to start") from None
    if restored:
        log.warning("destruction ledger repaired from the witness", extra=fields(restored=restored))
    replay(service)
    service.seal_legacy_plaintext()
    return Assembly(service, store, checkpoints, dev_token, witnessing)


def attach_audit_mac(store: RecordStore, index_key: IndexKey) -> None:
    """MAC the calls' pending audit entries under the service's key (storage/sql/
    audit_pending.py): every process writing to the store must, or the sequencer refuses them."""
    store.audit_mac = lambda writer, digest: audit_pending_mac(index_key, writer, digest)


def open_audited_store(config: Config, provider: KeyProvider, clock: Clock) -> RecordStore:
    """The configured store, migrated, its audit entries MACed (for commands that write to the
    store without the whole service: the key epochs)."""
    from vault_service.key_hierarchy import KeyHierarchy

    store = open_store(config)
    keys = KeyHierarchy(store, provider, SubjectKeyCache(CacheLimits(max_entries=0), clock), clock)
    attach_audit_mac(store, keys.index_key)
    return store


def open_witness(config: Config, env: Mapping[str, str] | None = None) -> Witness | None:
    """The configured witness of both logs: a witness process (``[witness] url``, its key
    ``public_key``), a directory (``directory``), an S3-compatible bucket (``directory`` of the
    form ``s3://bucket/prefix/``, its key ``key_file``), or None when both are empty."""
    w = config.witness
    if w.url and w.directory:
        raise ConfigError(
            "witness.url and witness.directory: one witness, not two; with a witness process at"
            ' url set directory = ""'
        )
    where = s3_location(w.directory)
    if where is not None:
        return _s3_witness(config, where, env if env is not None else os.environ)
    if w.url:
        from vault_service.audit.witness_client import HttpWitness

        try:
            key = bytes.fromhex(w.public_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError(
                "witness.public_key: the witness's Ed25519 public key, 64 hex digits, is required"
                " with witness.url (vaultctl witness key --directory DIR prints it)"
            )
        try:
            return HttpWitness(w.url, w.name, key, w.timeout_seconds)
        except ValueError as exc:
            raise ConfigError(f"[witness] url, name or timeout_seconds: {exc}") from None
    if not w.directory:
        return None
    return DirectoryWitness(config.path(w.directory), w.name)


def _s3_witness(config: Config, where: tuple[str, str], env: Mapping[str, str]) -> Witness:
    from vault_service.audit.s3_objects import Bucket, s3_client
    from vault_service.audit.witness_s3 import S3Witness

    w = config.witness
    if not w.key_file:
        raise ConfigError(
            "witness.key_file: the witness's cosigning seed is required with an s3:// witness"
            " directory (a file on other storage than the bucket and the vault's backups)"
        )
    client = s3_client(
        endpoint_url=w.s3_endpoint_url or None,
        env=env,
        max_attempts=2,
        timeout_seconds=w.timeout_seconds,
    )
    return S3Witness(Bucket(client, *where), config.path(w.key_file), w.name)


def replay(service: VaultService) -> None:
    """Make the store agree with the destruction ledger (before anything is served, and after a
    repair of the ledger while serving)."""
    try:
        report = service.replay_ledger()
    except LedgerTampered as exc:
        raise ConfigError(f"{service.ledger.where}: {exc}; refusing to start") from None
    if report.total or report.re_deferred:
        log.warning(
            "destruction ledger replay destroyed again what a restored backup brought back",
            extra=fields(destroyed=report.total, deferred=report.re_deferred, **report.redone),
        )
