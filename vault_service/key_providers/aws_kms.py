"""AWS KMS key provider (boto3): one KMS key per root-key epoch.

Layout in KMS, for ``kms_alias = "alias/vault-service"``::

    alias/vault-service/v1  -> KMS key of epoch 1
    alias/vault-service/v2  -> KMS key of epoch 2
    alias/vault-service     -> the primary epoch's key (new wraps)

A root version is the epoch number. Rotating creates a KMS key and moves the primary alias; rewrap
uses KMS ReEncrypt (the subject key never leaves KMS); destroying a version schedules deletion of
its KMS key (KMS waits 7 to 30 days) and reports that date. KMS's own automatic rotation keeps old
backing keys forever, so it cannot make a shred backup-proof: epochs can.

Every wrap binds the canonical context as the KMS EncryptionContext (subject references are keyed
hashes, never subject ids), and every response's KeyId is checked against the key we asked for.
Vendor errors are mapped once, in :func:`_mapped`: throttling and connection failures become
Unavailable after botocore's bounded retries with exponential backoff ("standard" mode); disabled,
pending-deletion or missing keys FailedPrecondition; invalid ciphertext IntegrityError; access
denied ProviderAccessDenied.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vault_service.crypto import Context
from vault_service.errors import FailedPrecondition, IntegrityError, Internal, Unavailable
from vault_service.key_providers.base import (
    DestroyResult,
    KeyProvider,
    KeyState,
    KeyVersion,
    ProviderAccessDenied,
    WrappedKey,
)

try:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError("the aws-kms key provider needs boto3: pip install 'vault-service[aws]'") from exc

_UNAVAILABLE = {
    "ThrottlingException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "LimitExceededException",
    "ServiceUnavailableException",
    "RequestTimeout",
    "InternalFailure",
    "ServiceUnavailable",
}
_PRECONDITION = {
    "DisabledException",
    "KMSInvalidStateException",
    "NotFoundException",
    "KeyUnavailableException",
    "InvalidKeyUsageException",
}
_INTEGRITY = {"InvalidCiphertextException", "IncorrectKeyException"}
_DENIED = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
}
_VERSION = re.compile(r"/v(\d+)$")


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """The one place KMS errors become the project's errors (no vendor text escapes)."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _UNAVAILABLE:
            raise Unavailable("key provider unavailable") from None
        if code in _PRECONDITION:
            raise FailedPrecondition("root key is disabled, pending deletion or missing") from None
        if code in _INTEGRITY:
            raise IntegrityError() from None
        if code in _DENIED:
            raise ProviderAccessDenied() from None
        raise Internal() from None
    except BotoCoreError:
        # connection refused, timeouts, closed connections (after botocore's retries)
        raise Unavailable("key provider unavailable") from None


@dataclass(frozen=True)
class KmsSettings:
    """Connection settings (from the [keys] section of the config)."""

    alias: str
    region: str = "us-east-1"
    #: an existing key (id, ARN or alias) that ``initialize`` adopts as epoch 1
    initial_key_id: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 4
    timeout_seconds: float = 5.0
    pending_window_days: int = 7


def encryption_context(context: Context) -> dict[str, str]:
    """The KMS EncryptionContext carrying the canonical context (domain and items)."""
    return {"vault-service:domain": context.domain, **context.items}


class AwsKmsKeyProvider(KeyProvider):
    """Root keys in AWS KMS (see the module docstring)."""

    name = "aws-kms"

    def __init__(
        self, settings: KmsSettings, env: Mapping[str, str] | None = None, client: Any = None
    ) -> None:
        super().__init__()
        if not settings.alias.startswith("alias/") or settings.alias.startswith("alias/aws/"):
            raise ValueError("kms_alias must look like alias/NAME (not an AWS-managed alias)")
        self._settings = settings
        self._client = client or self._make_client(settings, env or {})
        self._lock = threading.Lock()
        self._arns: dict[str, str] = {}
        self._key_ids: dict[str, str] = {}
        self._primary: str | None = None

    @staticmethod
    def _make_client(settings: KmsSettings, env: Mapping[str, str]) -> Any:
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            region_name=settings.region,
        )
        config = BotoConfig(
            retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
            connect_timeout=settings.timeout_seconds,
            read_timeout=settings.timeout_seconds,
        )
        return session.client("kms", endpoint_url=settings.endpoint_url or None, config=config)

    @property
    def client(self) -> Any:
        """The boto3 KMS client (tests attach botocore's Stubber to it)."""
        return self._client

    def __repr__(self) -> str:
        return f"AwsKmsKeyProvider(alias={self._settings.alias!r})"

    # epoch bookkeeping -------------------------------------------------------------------------
    def _refresh(self) -> None:
        prefix = self._settings.alias + "/v"
        arns: dict[str, str] = {}
        key_ids: dict[str, str] = {}
        primary_target = None
        targets: dict[str, str] = {}
        with _mapped():
            for page in self._client.get_paginator("list_aliases").paginate():
                for alias in page.get("Aliases", []):
                    name, target = alias.get("AliasName", ""), alias.get("TargetKeyId")
                    if not target:
                        continue
                    if name == self._settings.alias:
                        primary_target = target
                    elif name.startswith(prefix) and _VERSION.search(name):
                        targets[_VERSION.search(name).group(1)] = target  # type: ignore[union-attr]
            for version, target in targets.items():
                meta = self._client.describe_key(KeyId=target)["KeyMetadata"]
                arns[version], key_ids[version] = meta["Arn"], meta["KeyId"]
        primary = next((v for v, t in targets.items() if t == primary_target), None)
        with self._lock:
            self._arns, self._key_ids, self._primary = arns, key_ids, primary

    def _arn(self, version: str) -> str:
        if version not in self._arns:
            self._refresh()
        arn = self._arns.get(version)
        if arn is None:
            raise FailedPrecondition("root key version is not available (destroyed or unknown)")
        return arn

    def initialize(self) -> str:
        """Create epoch 1 and the aliases if the alias has no epochs yet; returns the primary."""
        self._refresh()
        if self._arns:
            return self.primary_version()
        if self._settings.initial_key_id:
            with _mapped():
                meta = self._client.describe_key(KeyId=self._settings.initial_key_id)["KeyMetadata"]
                if (
                    meta.get("KeyState") != "Enabled"
                    or meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT"
                ):
                    raise FailedPrecondition("kms_key_id must be an enabled symmetric encryption key")
                self._alias_epoch("1", meta["KeyId"])
        else:
            self._create_epoch("1")
        self._refresh()
        return self.primary_version()

    def _create_epoch(self, version: str) -> None:
        with _mapped():
            meta = self._client.create_key(
                Description=f"vault-service root key, epoch {version}",
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=[{"TagKey": "vault-service:epoch", "TagValue": version}],
            )["KeyMetadata"]
        self._alias_epoch(version, meta["KeyId"])

    def _alias_epoch(self, version: str, key_id: str) -> None:
        with _mapped():
            self._client.create_alias(AliasName=f"{self._settings.alias}/v{version}", TargetKeyId=key_id)
            if version == "1":
                self._client.create_alias(AliasName=self._settings.alias, TargetKeyId=key_id)
            else:
                self._client.update_alias(AliasName=self._settings.alias, TargetKeyId=key_id)

    def refresh(self) -> None:
        self._refresh()

    def primary_version(self) -> str:
        if self._primary is None:
            self._refresh()
        if self._primary is None:
            raise FailedPrecondition(f"no root key under {self._settings.alias}: run vaultctl keys init")
        return self._primary

    def versions(self) -> list[KeyVersion]:
        self._refresh()
        out = []
        with _mapped():
            for version in sorted(self._arns, key=int):
                meta = self._client.describe_key(KeyId=self._arns[version])["KeyMetadata"]
                state = {
                    "PendingDeletion": KeyState.PENDING_DESTRUCTION,
                    "Disabled": KeyState.RETIRED,
                }.get(meta["KeyState"], KeyState.ACTIVE)
                deletion = meta.get("DeletionDate")
                out.append(
                    KeyVersion(
                        version,
                        state,
                        meta["CreationDate"].timestamp(),
                        version == self._primary,
                        deletion.timestamp() if deletion else None,
                    )
                )
        return out

    def rotate(self) -> str:
        self._refresh()
        new = str(max((int(v) for v in self._arns), default=0) + 1)
        self._create_epoch(new)
        self._refresh()
        return new

    def destroy_version(self, version: str) -> DestroyResult:
        if version == self.primary_version():
            raise FailedPrecondition("the primary root version cannot be destroyed")
        with _mapped():
            self._arn(version)  # refreshes the epoch list if needed
            resp = self._client.schedule_key_deletion(
                KeyId=self._key_ids[version], PendingWindowInDays=self._settings.pending_window_days
            )
        at = resp["DeletionDate"].timestamp()
        return DestroyResult(
            version,
            KeyState.PENDING_DESTRUCTION,
            at,
            f"KMS key deletion scheduled ({self._settings.pending_window_days} day pending window)",
        )

    # vendor calls ------------------------------------------------------------------------------
    def _check_key_id(self, response: Mapping[str, Any], expected_arn: str) -> None:
        if response.get("KeyId") != expected_arn:
            raise IntegrityError()

    def _encrypt(self, plaintext: bytes, context: Context) -> tuple[str, bytes]:
        version = self.primary_version()
        arn = self._arn(version)
        with _mapped():
            resp = self._client.encrypt(
                KeyId=arn, Plaintext=plaintext, EncryptionContext=encryption_context(context)
            )
        self._check_key_id(resp, arn)
        return version, bytes(resp["CiphertextBlob"])

    def _decrypt(self, wrapped: WrappedKey, context: Context) -> bytes:
        arn = self._arn(wrapped.root_version)
        with _mapped():
            resp = self._client.decrypt(
                CiphertextBlob=wrapped.ciphertext,
                KeyId=arn,
                EncryptionContext=encryption_context(context),
            )
        self._check_key_id(resp, arn)
        return bytes(resp["Plaintext"])

    def _rewrap(self, items: Sequence[tuple[WrappedKey, Context]]) -> list[WrappedKey]:
        version = self.primary_version()
        arn = self._arn(version)
        out = []
        for wrapped, context in items:
            ec = encryption_context(context)
            with _mapped():
                resp = self._client.re_encrypt(
                    CiphertextBlob=wrapped.ciphertext,
                    SourceEncryptionContext=ec,
                    SourceKeyId=self._arn(wrapped.root_version),
                    DestinationKeyId=arn,
                    DestinationEncryptionContext=ec,
                )
            self._check_key_id(resp, arn)
            out.append(WrappedKey(version, bytes(resp["CiphertextBlob"])))
        return out
