"""Service configuration: one TOML file, environment overrides, validated at start-up.

Every setting lives in a frozen dataclass with a docstring per field. :func:`load_config` takes the
environment as an explicit mapping (tests never touch ``os.environ``). An override is
``VAULT_<SECTION>_<KEY>`` (upper case), e.g. ``VAULT_SERVER_LISTEN=127.0.0.1:6000``. Relative paths
are resolved against the config file's directory. Errors name the file and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vault_service.errors import ConfigError


@dataclass(frozen=True)
class ServerConfig:
    """[server]"""

    listen: str = "127.0.0.1:50051"
    """host:port to bind. Anything other than loopback requires TLS (see the access-control docs)."""
    workers: int = 0
    """Threads serving RPCs in each process; 0: 2 on SQLite, 8 on PostgreSQL (see rpc/sizing.py)."""
    record_threads: int = -1
    """Threads of the record calls' own pool (rpc/sizing.py); 0: none, they share ``workers``';
    -1: chosen by the server (1 on SQLite with the local keyring, else 0)."""
    processes: int = 0
    """Server processes sharing the listening port (SO_REUSEPORT); 0: 1 on SQLite, one per usable
    CPU (at most 8) on PostgreSQL; ``vaultctl serve --workers N`` overrides it (rpc/sizing.py)."""
    max_concurrent_rpcs: int = 256
    """Calls beyond this are refused with RESOURCE_EXHAUSTED."""
    max_message_bytes: int = 8 * 1024 * 1024
    """Largest request message (a unary record with its content)."""
    dev_token_file: str = ""
    """If set (development only, loopback only), a random token is kept in this file (mode 0600)
    and granted to a principal named "developer" with the role ``dev_role``."""
    dev_role: str = "application"
    """The role of the development principal."""
    dev_clock_file: str = ""
    """If set (development only, loopback only), the vault's clock is the real one plus the
    offset in this file, which ``vaultctl dev advance`` moves forward: retention, shares,
    dormancy and key epochs can be rehearsed without waiting (docs/lifecycle.md)."""
    purge_interval_seconds: float = 5.0
    """How often erased subjects' record rows are purged in the background."""
    grace_seconds: float = 5.0
    """On SIGTERM, how long in-flight calls may finish."""
    drain_seconds: float = 1.0
    """On SIGTERM, how long health says NOT_SERVING while calls are still taken, so that load
    balancers stop sending new calls before the server refuses them."""


@dataclass(frozen=True)
class StorageConfig:
    """[storage]"""

    backend: str = "sqlite"
    """Record store: "sqlite" (one machine) or "postgres" (several replicas; docs/deployment.md)."""
    sqlite_path: str = "var/vault.db"
    """SQLite database file."""
    sqlite_synchronous: str = "NORMAL"
    """NORMAL survives process crashes; FULL also survives power loss (about 3x slower commits)."""
    sqlite_busy_timeout_seconds: float = 5.0
    """How long a write waits for a lock another process holds before UNAVAILABLE."""
    sqlite_cache_mib: int = 64
    """SQLite's page cache per connection (one per server thread): memory grows with the
    database up to this bound, then stays flat."""
    postgres_dsn: str = ""
    """postgres: libpq connection string or URI, e.g. "host=db.internal dbname=vault user=vault
    sslmode=verify-full". Keep the password out of this file: use PGPASSFILE (~/.pgpass) or set
    the whole string in VAULT_STORAGE_POSTGRES_DSN."""
    postgres_pool_min: int = 1
    """postgres: connections kept open per process."""
    postgres_pool_max: int = 10
    """postgres: most connections per process (size it above server.workers plus the jobs)."""
    postgres_timeout_seconds: float = 5.0
    """postgres: longest wait for a connection or a row lock before the call fails UNAVAILABLE."""
    blob_backend: str = "filesystem"
    """Blob store: "filesystem" or "s3" (S3, R2, MinIO)."""
    blob_dir: str = "var/blobs"
    """filesystem: directory of the blob store."""
    s3_bucket: str = ""
    """s3: bucket name (credentials come from the usual AWS environment/instance chain)."""
    s3_prefix: str = "blobs/"
    """s3: key prefix of the blobs."""
    s3_endpoint_url: str = ""
    """s3: endpoint for R2 (https://<account>.r2.cloudflarestorage.com), MinIO or a test server."""
    s3_region: str = "us-east-1"
    """s3: region ("auto" for R2)."""
    max_object_bytes: int = 4 * 1024 * 1024 * 1024
    """Largest content object accepted by a streaming upload (RESOURCE_EXHAUSTED beyond)."""
    partial_upload_max_age_seconds: float = 3600.0
    """Leftovers of interrupted uploads older than this are removed by the background sweep."""


@dataclass(frozen=True)
class KeysConfig:
    """[keys]"""

    provider: str = "local"
    """Key provider: "local", "aws-kms" or "vault-transit"."""
    keyring_path: str = "keys/dev-keyring.json"
    """local: keyring file (mode 0600)."""
    passphrase_env: str = "VAULT_KEYRING_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
    """local: environment variable holding the keyring passphrase, if the keyring is sealed."""
    kms_alias: str = "alias/vault-service"
    """aws-kms: primary alias; epoch keys are aliased ``<kms_alias>/v<N>``."""
    kms_key_id: str = ""
    """aws-kms: an existing key (id, ARN or alias) that ``vaultctl keys init`` adopts as epoch 1;
    empty means init creates one."""
    kms_region: str = "us-east-1"
    """aws-kms: AWS region. Credentials come from the usual AWS environment/instance chain."""
    kms_endpoint_url: str = ""
    """aws-kms: endpoint override (a VPC endpoint, or a test server)."""
    kms_pending_window_days: int = 7
    """aws-kms: days KMS waits before deleting a destroyed epoch's key (7 to 30)."""
    transit_url: str = ""
    """vault-transit: Vault address; empty means $VAULT_ADDR."""
    transit_token_env: str = "VAULT_TOKEN"  # noqa: S105 (a variable name, not a secret)
    """vault-transit: environment variable holding the Vault token."""
    transit_mount: str = "transit"
    """vault-transit: mount path of the Transit engine."""
    transit_key: str = "vault-service"
    """vault-transit: name of the Transit key."""
    transit_binding: str = "derived"
    """vault-transit: how the context is bound: "derived" (server-side rewrap) or
    "associated_data" (rewrap through this process)."""
    provider_max_attempts: int = 4
    """aws-kms, vault-transit: attempts per call (exponential backoff) before UNAVAILABLE."""
    provider_timeout_seconds: float = 5.0
    """aws-kms, vault-transit: connect and read timeout per attempt."""
    cache_max_entries: int = 10000
    """Unwrapped subject keys kept in memory (0 disables the cache)."""
    cache_max_age_seconds: float = 300.0
    """How long an unwrapped subject key may be reused."""
    cache_max_uses: int = 100000
    """How many reads may reuse one unwrapped subject key."""
    unhealthy_after_seconds: float = 10.0
    """Health turns NOT_SERVING once the provider has failed for this long; it recovers by
    itself on the first success."""


@dataclass(frozen=True)
class TlsConfig:
    """[tls]"""

    cert_file: str = ""
    """Server certificate chain (PEM). Empty: plaintext, loopback only."""
    key_file: str = ""
    """Server private key (PEM, mode 0600)."""
    client_ca_file: str = ""
    """CA bundle (PEM) that issues client certificates; enables mTLS."""
    require_client_cert: bool = True
    """With a client CA: refuse connections without a valid client certificate (tokens may still
    name the principal); false lets token-only clients connect over TLS too."""


@dataclass(frozen=True)
class AuditConfig:
    """[audit]"""

    checkpoint_path: str = "var/audit/checkpoints.jsonl"
    """Append-only file of signed checkpoints. Keep it on other storage than the database (the
    point is that whoever can rewrite the database cannot rewrite these)."""
    checkpoint_interval_seconds: float = 1.0
    """How often the sequencer (one replica at a time) integrates new entries into the Merkle
    tree and signs and witnesses its checkpoint (bounds how much of the newest log could be
    rewritten undetected)."""
    retention_days: float = 730.0
    """Entries older than this are pruned. Two years: Korea's standard on measures to secure
    personal information (Art. 8) asks at least 2 years of access records for systems holding
    sensitive data or unique identifiers. (A company's own users' 3-month access logs are
    records of a category in the vault, not this trail.)"""
    origin: str = ""
    """The audit log's origin in its checkpoint notes; empty: ``vault-service/audit/<key id>``
    from the signing key. Keep it stable: the witness knows the log by it."""
    prune_interval_seconds: float = 3600.0
    """How often the server prunes."""
    tail_poll_seconds: float = 0.5
    """How often a followed audit tail (TailAudit with follow, ``vaultctl audit tail --follow``)
    looks for new entries: the most a new entry waits before it is sent (0 < value <= 60)."""
    tail_max_follows: int = 2
    """Followed audit tails one process serves at once; one more is RESOURCE_EXHAUSTED. Each
    holds one of the ``server.workers`` threads while it runs, so never more than the workers
    less one, whatever this says (0: no follows)."""


@dataclass(frozen=True)
class WitnessConfig:
    """[witness]"""

    directory: str = "var/witness"
    """The witness of both logs' checkpoints (and keeper of the ledger's lines): a directory on
    other storage than the database, the blobs and the ledger, never restored with them, or
    ``s3://bucket/prefix/`` (an S3-compatible bucket, shared by conditional writes). Empty:
    no witness (a rollback of the database and the ledger together goes unnoticed: not for
    production)."""
    name: str = "vault-service-witness"
    """The witness's name in its cosignature lines."""
    url: str = ""
    """A witness process (``vaultctl witness serve``) at ``http(s)://host:port``, instead of
    ``directory`` (set it to ""). Its key is ``public_key``, never taken from the server."""
    public_key: str = ""
    """With ``url``: the witness's Ed25519 public key, 64 hex digits (``vaultctl witness key``)."""
    timeout_seconds: float = 5.0
    """With ``url``: the longest the witness may take to answer one read or write."""
    check_interval_seconds: float = 10.0
    """How often every process checks its database's audit tree against the witness (a rollback
    or fork halts the release of plaintext)."""
    s3_endpoint_url: str = ""
    """With an s3:// ``directory``: the endpoint (R2, MinIO, a test server); empty for AWS."""
    key_file: str = ""
    """With an s3:// ``directory`` (required): the witness's cosigning seed, made if missing;
    never in the bucket, nor where the vault's backups are."""


@dataclass(frozen=True)
class LifecycleConfig:
    """[lifecycle]"""

    ledger_path: str = "var/ledger/erasures.jsonl"
    """The destruction ledger (every erasure, shred, replaced version, revoked share and consent;
    replayed at start-up): keep it on other storage than the database and its backups, or a
    restore of both brings back what was destroyed. (The file name is kept from when it listed
    erasures only.) Or ``s3://bucket/prefix/``: an S3-compatible bucket, appends ordered by
    conditional writes (docs/lifecycle.md), for processes on several machines."""
    ledger_s3_endpoint_url: str = ""
    """With an s3:// ``ledger_path``: the endpoint (R2, MinIO, a test server); empty for AWS."""
    rotate_every_days: float = 30.0
    """Root-key epochs: a new primary root version this often (0 disables scheduled rotation)."""
    backup_window_days: float = 35.0
    """How long backups are kept: a retired root version is destroyed this long after it was
    retired, when no backup can still need it."""
    epoch_check_interval_seconds: float = 3600.0
    """How often each server runs the epoch and dormancy jobs. (Dormancy itself is the
    policy's ``[dormancy]`` table: a company's own promise.)"""


@dataclass(frozen=True)
class LoggingConfig:
    """[logging]"""

    level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR. No level ever logs plaintext."""
    file: str = ""
    """Log file; empty means standard error."""
    format: str = "json"
    """"json": one object per line with a correlation id per call (for log pipelines); "text":
    the same facts as key=value for a terminal. Neither ever carries PHI (docs/operations.md)."""


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]"""

    listen: str = ""
    """host:port of the Prometheus ``/metrics`` endpoint (plain HTTP; it carries no PHI). Empty:
    no endpoint. With several worker processes, worker i listens on port + i."""


@dataclass(frozen=True)
class SecurityConfig:
    """[security]"""

    repeated_denials_threshold: int = 10
    """Refusals of one principal within the window that raise a ``repeated_denials`` event."""
    repeated_denials_window_seconds: float = 60.0
    """The sliding window of the repeated-denials event."""


@dataclass(frozen=True)
class TracingConfig:
    """[tracing]"""

    exporter: str = "off"
    """"off": no tracing (OpenTelemetry is not even imported); "otlp": spans to an OpenTelemetry
    collector over OTLP/gRPC; "console": spans as JSON on standard error (development). Needs
    the ``tracing`` extra. Spans never carry PHI or identifiers (docs/operations.md)."""
    otlp_endpoint: str = "http://127.0.0.1:4317"
    """otlp: the collector, ``http://host:port`` (plaintext) or ``https://host:port`` (TLS; a
    private CA through OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE)."""
    otlp_timeout_seconds: float = 5.0
    """otlp: longest an export (with its retries) may take; spans are exported in the
    background, so this bounds only the export thread and the flush at shutdown."""
    service_name: str = "vault-service"
    """The ``service.name`` of the spans' resource."""
    sample_ratio: float = 1.0
    """Share of traces recorded when the caller sends no trace context (0 to 1); a caller's
    sampling decision, in its ``traceparent``, is followed."""
    export_interval_seconds: float = 2.0
    """How often queued spans are sent."""
    max_queue_size: int = 2048
    """Spans waiting for export; beyond this, new spans are dropped (never a call delayed)."""


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    server: ServerConfig
    storage: StorageConfig
    keys: KeysConfig
    tls: TlsConfig
    audit: AuditConfig
    lifecycle: LifecycleConfig
    logging: LoggingConfig
    policy_path: Path
    base_dir: Path
    metrics: MetricsConfig = MetricsConfig()
    security: SecurityConfig = SecurityConfig()
    tracing: TracingConfig = TracingConfig()
    witness: WitnessConfig = WitnessConfig()

    def path(self, value: str) -> Path:
        """Resolve a configured path against the config file's directory."""
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p).resolve()


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "storage": StorageConfig,
    "keys": KeysConfig,
    "tls": TlsConfig,
    "audit": AuditConfig,
    "lifecycle": LifecycleConfig,
    "logging": LoggingConfig,
    "metrics": MetricsConfig,
    "security": SecurityConfig,
    "tracing": TracingConfig,
    "witness": WitnessConfig,
}
_CHOICES = {
    ("storage", "backend"): {"sqlite", "postgres"},
    ("storage", "blob_backend"): {"filesystem", "s3"},
    ("storage", "sqlite_synchronous"): {"NORMAL", "FULL", "EXTRA"},
    ("keys", "provider"): {"local", "aws-kms", "vault-transit"},
    ("keys", "transit_binding"): {"derived", "associated_data"},
    ("logging", "level"): {"DEBUG", "INFO", "WARNING", "ERROR"},
    ("logging", "format"): {"json", "text"},
    ("tracing", "exporter"): {"off", "otlp", "console"},
}


def _coerce(source: str, key: str, raw: Any, default: Any, from_env: bool) -> Any:
    kind = type(default)
    if kind is bool:
        if from_env and isinstance(raw, str) and raw.lower() in _BOOLS:
            return _BOOLS[raw.lower()]
        if isinstance(raw, bool):
            return raw
        raise ConfigError(f"{source}: {key}: expected true or false")
    if from_env and isinstance(raw, str) and kind is not str:
        try:
            raw = float(raw) if kind is float else int(raw)
        except ValueError:
            raise ConfigError(f"{source}: {key}: expected a {kind.__name__}") from None
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)
    if not isinstance(raw, kind) or isinstance(raw, bool):
        raise ConfigError(f"{source}: {key}: expected a {kind.__name__}, got {type(raw).__name__}")
    return raw


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


#: the [lifecycle] dormancy keys of earlier versions, and where they went
_MOVED_TO_POLICY = {
    "dormant_after_days": "after_days",
    "dormancy_notice_days": "notice_days",
    "dormant_destroy_after_days": "destroy_after_days",
}


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    """Read, override from ``env`` and validate; raises ConfigError naming file and key."""
    source = str(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    for key in doc:
        if key not in _SECTIONS and key != "policy":
            raise ConfigError(f"{source}: {key}: unknown section or key")
    built: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}]: must be a table")
        names = {f.name for f in fields(cls)}
        for key in table:
            if section == "lifecycle" and key in _MOVED_TO_POLICY:
                raise ConfigError(
                    f"{source}: lifecycle.{key}: dormancy is set in the policy now:"
                    f" [dormancy] {_MOVED_TO_POLICY[key]} (docs/lifecycle.md)"
                )
            if key not in names:
                raise ConfigError(f"{source}: {section}.{key}: unknown key")
        defaults = cls()
        values: dict[str, Any] = {}
        for name in names:
            env_name = f"VAULT_{section}_{name}".upper()
            from_env = env_name in env
            raw = env[env_name] if from_env else table.get(name, getattr(defaults, name))
            where = env_name if from_env else f"{section}.{name}"
            value = _coerce(source, where, raw, getattr(defaults, name), from_env)
            choices = _CHOICES.get((section, name))
            if choices and value not in choices:
                raise ConfigError(
                    f"{source}: {where}: {value!r} is not one of {', '.join(sorted(choices))}"
                )
            values[name] = value
        built[section] = cls(**values)
    _check_sections(source, built)
    policy = env.get("VAULT_POLICY", doc.get("policy"))
    if not isinstance(policy, str) or not policy:
        raise ConfigError(f"{source}: policy: path of the policy file is required")
    base = path.resolve().parent
    policy_path = Path(policy) if Path(policy).is_absolute() else (base / policy).resolve()
    return Config(**built, policy_path=policy_path, base_dir=base)


def _check_sections(source: str, built: Mapping[str, Any]) -> None:
    """Checks that span several keys."""
    server: ServerConfig = built["server"]
    if min(server.workers, server.record_threads + 1, server.processes) < 0 or (
        server.max_concurrent_rpcs < 1
    ):
        raise ConfigError(
            f"{source}: server.workers and processes must be >= 0 (0: chosen by the server),"
            " server.record_threads >= -1 (-1: chosen by it), max_concurrent_rpcs >= 1"
        )
    storage: StorageConfig = built["storage"]
    if storage.backend == "postgres" and not storage.postgres_dsn:
        raise ConfigError(f'{source}: storage.postgres_dsn is required with backend = "postgres"')
    if storage.postgres_pool_min < 0 or storage.postgres_pool_max < max(1, storage.postgres_pool_min):
        raise ConfigError(f"{source}: storage.postgres_pool_max must be >= max(1, postgres_pool_min)")
    if ":" not in server.listen:
        raise ConfigError(f"{source}: server.listen: expected host:port")
    keys: KeysConfig = built["keys"]
    if not 7 <= keys.kms_pending_window_days <= 30:
        raise ConfigError(f"{source}: keys.kms_pending_window_days: must be between 7 and 30")
    if keys.provider == "aws-kms" and (
        not keys.kms_alias.startswith("alias/") or keys.kms_alias.startswith("alias/aws/")
    ):
        raise ConfigError(f"{source}: keys.kms_alias: must look like alias/NAME")
    if keys.provider_max_attempts < 1 or keys.cache_max_entries < 0:
        raise ConfigError(
            f"{source}: keys.provider_max_attempts must be >= 1 and keys.cache_max_entries >= 0"
        )
    audit: AuditConfig = built["audit"]
    if audit.retention_days <= 0 or audit.checkpoint_interval_seconds <= 0:
        raise ConfigError(
            f"{source}: audit.retention_days and audit.checkpoint_interval_seconds must be > 0"
        )
    if not 0 < audit.tail_poll_seconds <= 60:
        raise ConfigError(f"{source}: audit.tail_poll_seconds must be > 0 and at most 60")
    if audit.tail_max_follows < 0:
        raise ConfigError(f"{source}: audit.tail_max_follows must be >= 0")
    metrics: MetricsConfig = built["metrics"]
    if metrics.listen and ":" not in metrics.listen:
        raise ConfigError(f"{source}: metrics.listen: expected host:port")
    security: SecurityConfig = built["security"]
    if security.repeated_denials_threshold < 1 or security.repeated_denials_window_seconds <= 0:
        raise ConfigError(
            f"{source}: security.repeated_denials_threshold must be >= 1 and the window > 0"
        )
    _check_tracing(source, built["tracing"])
    tls: TlsConfig = built["tls"]
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError(f"{source}: tls.cert_file and tls.key_file go together")
    if tls.client_ca_file and not tls.cert_file:
        raise ConfigError(f"{source}: tls.client_ca_file needs tls.cert_file and tls.key_file")


def _check_tracing(source: str, tracing: TracingConfig) -> None:
    if not 0.0 <= tracing.sample_ratio <= 1.0:
        raise ConfigError(f"{source}: tracing.sample_ratio: must be between 0 and 1")
    if tracing.otlp_timeout_seconds <= 0 or tracing.export_interval_seconds <= 0:
        raise ConfigError(
            f"{source}: tracing.otlp_timeout_seconds and tracing.export_interval_seconds must be > 0"
        )
    if tracing.max_queue_size < 1:
        raise ConfigError(f"{source}: tracing.max_queue_size: must be >= 1")
    if not tracing.service_name:
        raise ConfigError(f"{source}: tracing.service_name: must not be empty")
    scheme, sep, rest = tracing.otlp_endpoint.partition("://")
    host, _, port = rest.rstrip("/").rpartition(":")
    if scheme not in ("http", "https") or not sep or not host or not port.isdigit():
        raise ConfigError(
            f"{source}: tracing.otlp_endpoint: expected http://host:port or https://host:port"
        )
