"""AWS KMS provider failure paths: real retries through a fault proxy in front of moto's server,
and botocore's Stubber for the key states moto does not model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.key_providers.conftest import kms_provider
from tests.support.moto_server import CREDENTIALS, KmsFaultProxy, MotoServer, free_port
from vault_service.crypto import Context, SubjectKey
from vault_service.errors import FailedPrecondition, IntegrityError, Unavailable
from vault_service.key_providers.aws_kms import (
    AwsKmsKeyProvider,
    KmsSettings,
    encryption_context,
)
from vault_service.key_providers.base import ProviderAccessDenied

CTX = Context("subject-key", {"subject": "ab" * 16})


@pytest.fixture
def kms(moto: MotoServer) -> AwsKmsKeyProvider:
    moto.reset()
    return kms_provider(moto)


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[KmsFaultProxy]:
    moto.reset()
    p = KmsFaultProxy(moto.port)
    yield p
    p.stop()


def test_encryption_context_carries_the_canonical_context(kms: AwsKmsKeyProvider) -> None:
    arn = kms._arn(kms.primary_version())
    with Stubber(kms.client) as stub:
        stub.add_response(
            "encrypt",
            {"CiphertextBlob": b"x" * 40, "KeyId": arn},
            expected_params={
                "KeyId": arn,
                "Plaintext": stub_any(),
                "EncryptionContext": {"vault-service:domain": "subject-key", "subject": "ab" * 16},
            },
        )
        kms.wrap(SubjectKey.generate(), CTX)
        stub.assert_no_pending_responses()
    assert encryption_context(CTX) == {"vault-service:domain": "subject-key", "subject": "ab" * 16}


def stub_any() -> Any:
    from botocore.stub import ANY

    return ANY


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("DisabledException", FailedPrecondition),
        ("KMSInvalidStateException", FailedPrecondition),  # pending deletion
        ("NotFoundException", FailedPrecondition),
        ("KeyUnavailableException", FailedPrecondition),
        ("InvalidCiphertextException", IntegrityError),
        ("IncorrectKeyException", IntegrityError),
        ("AccessDeniedException", ProviderAccessDenied),
        ("SomethingNew", Exception),
    ],
)
def test_error_mapping(kms: AwsKmsKeyProvider, code: str, error: type[Exception]) -> None:
    wrapped = kms.wrap(SubjectKey.generate(), CTX)
    with Stubber(kms.client) as stub:
        stub.add_client_error("decrypt", code, "vendor text must not leak", http_status_code=400)
        with pytest.raises(error) as err:
            kms.unwrap(wrapped, CTX, SubjectKey)
    assert "vendor text" not in str(err.value)


def test_response_key_id_is_checked(kms: AwsKmsKeyProvider) -> None:
    wrapped = kms.wrap(SubjectKey.generate(), CTX)
    with Stubber(kms.client) as stub:
        stub.add_response(
            "decrypt", {"Plaintext": b"k" * 32, "KeyId": "arn:aws:kms:us-east-1:1:key/other"}
        )
        with pytest.raises(IntegrityError):
            kms.unwrap(wrapped, CTX, SubjectKey)


def test_throttling_is_retried_with_backoff_then_unavailable(
    moto: MotoServer, proxy: KmsFaultProxy
) -> None:
    provider = AwsKmsKeyProvider(
        KmsSettings(alias="alias/vs-throttle", endpoint_url=proxy.url, max_attempts=3), CREDENTIALS
    )
    provider.initialize()
    key = SubjectKey.generate()
    proxy.fail("Encrypt", "ThrottlingException", times=2)
    wrapped = provider.wrap(key, CTX)  # two throttles, then success
    assert proxy.seen["Encrypt"] == 3
    proxy.fail("Decrypt", "ThrottlingException", times=10)
    with pytest.raises(Unavailable):
        provider.unwrap(wrapped, CTX, SubjectKey)
    assert proxy.seen["Decrypt"] == 3  # bounded: max_attempts, not 10
    assert provider.stats.failing_since is not None
    proxy.fail("Decrypt", "ThrottlingException", times=0)
    assert provider.unwrap(wrapped, CTX, SubjectKey) == key
    assert provider.stats.failing_since is None


def test_connection_refused_is_unavailable_quickly() -> None:
    provider = AwsKmsKeyProvider(
        KmsSettings(
            alias="alias/x",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            max_attempts=2,
            timeout_seconds=1.0,
        ),
        CREDENTIALS,
    )
    started = time.monotonic()
    with pytest.raises(Unavailable):
        provider.wrap(SubjectKey.generate(), CTX)
    assert time.monotonic() - started < 10


def test_uninitialized_alias_says_how_to_fix(moto: MotoServer) -> None:
    moto.reset()
    provider = AwsKmsKeyProvider(KmsSettings(alias="alias/none", endpoint_url=moto.url), CREDENTIALS)
    with pytest.raises(FailedPrecondition, match="vaultctl keys init"):
        provider.wrap(SubjectKey.generate(), CTX)


def test_aws_managed_alias_refused() -> None:
    with pytest.raises(ValueError, match="alias/NAME"):
        AwsKmsKeyProvider(KmsSettings(alias="alias/aws/s3"), CREDENTIALS)


@pytest.mark.parametrize("form", ["id", "arn", "alias"])
def test_init_adopts_an_existing_key_by_id_arn_or_alias(moto: MotoServer, form: str) -> None:
    import boto3

    moto.reset()
    client = boto3.client(
        "kms",
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    meta = client.create_key(Description="pre-existing")["KeyMetadata"]
    client.create_alias(AliasName="alias/existing", TargetKeyId=meta["KeyId"])
    given = {"id": meta["KeyId"], "arn": meta["Arn"], "alias": "alias/existing"}[form]
    provider = AwsKmsKeyProvider(
        KmsSettings(alias="alias/vs-adopt", endpoint_url=moto.url, initial_key_id=given), CREDENTIALS
    )
    assert provider.initialize() == "1"
    assert provider._arn("1") == meta["Arn"]
    wrapped = provider.wrap(SubjectKey.generate(), CTX)
    assert wrapped.root_version == "1"
    assert provider.rotate() == "2" and provider._arn("2") != meta["Arn"]
