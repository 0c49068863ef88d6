"""Envelope encryption per record against peer libraries, same payloads, same run.

One operation = seal a 1 KiB payload under a fresh data key wrapped by a long-lived key-encryption
key (a subject key), then open it again. Contestants:

- vault-service: the project's own code as the service uses it (DataKey.generate, wrap_key under
  the subject key with the data-key context, seal_payload with the payload context; unwrap_key,
  open_payload);
- AWS Encryption SDK for Python with a raw AES-256 wrapping key (RawMasterKey: the Python SDK's
  raw AES keyring), algorithm suite AES_256_GCM_HKDF_SHA512_COMMIT_KEY (key commitment, no ECDSA
  signature: the suite closest to ours; the default suite adds a P-384 signature per message);
- the same with its caching materials manager (data keys reused across messages: fewer key
  operations, weaker isolation than a fresh key per record);
- Google Tink's KmsEnvelopeAead (AES256_GCM data keys) with a local AES256_GCM key as the KEK.

Each figure is ops/s, the median of ``REPEATS``; ratios are vault-service against each peer.
Needs the bench extra (pip install -e '.[bench]'), which `make bench` installs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from benchmarks.harness import Result, median_of, rate
from vault_service.crypto import DataKey, SubjectKey
from vault_service.crypto.context import record_context
from vault_service.crypto.keywrap import unwrap_key, wrap_key
from vault_service.crypto.payload import open_payload, seal_payload

OPS = 3000
PAYLOAD = os.urandom(1024)
REF = b"\x07" * 32


def _vault() -> Callable[[int], None]:
    subject_key = SubjectKey.generate()

    def op(i: int) -> None:
        record_id = f"0193a0e2-4b1c-7d3e-8f00-{i:012d}"
        key_ctx = record_context("data-key", REF, record_id, 1, "concern_text")
        payload_ctx = record_context("payload", REF, record_id, 1, "concern_text")
        data_key = DataKey.generate()
        wrapped = wrap_key(subject_key, data_key, key_ctx)
        sealed = seal_payload(data_key, payload_ctx, PAYLOAD)
        opened = open_payload(unwrap_key(subject_key, wrapped, key_ctx, DataKey), payload_ctx, sealed)
        assert opened == PAYLOAD

    return op


def _aws(cached: bool) -> Callable[[int], None]:
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.key_providers.raw import RawMasterKey, WrappingKey

    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    master = RawMasterKey(
        provider_id="vault-bench",
        key_id=b"subject-key",
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=os.urandom(32),
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        ),
    )
    source: dict[str, object] = {"key_provider": master}
    if cached:
        cmm = aws_encryption_sdk.CachingCryptoMaterialsManager(
            master_key_provider=master,
            cache=aws_encryption_sdk.LocalCryptoMaterialsCache(capacity=100),
            max_age=600.0,
            max_messages_encrypted=1000,
        )
        source = {"materials_manager": cmm}
    suite = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY

    def op(i: int) -> None:
        context = {"subject": REF.hex(), "record": str(i), "category": "concern_text"}
        sealed, _ = client.encrypt(source=PAYLOAD, encryption_context=context, algorithm=suite, **source)
        opened, _ = client.decrypt(source=sealed, **source)
        assert opened == PAYLOAD

    return op


def _tink() -> Callable[[int], None]:
    import tink
    from tink import aead

    aead.register()
    kek = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM).primitive(aead.Aead)
    envelope = aead.KmsEnvelopeAead(aead.aead_key_templates.AES256_GCM, kek)

    def op(i: int) -> None:
        ad = b"subject=" + REF.hex().encode() + b";record=" + str(i).encode()
        sealed = envelope.encrypt(PAYLOAD, ad)
        assert envelope.decrypt(sealed, ad) == PAYLOAD

    return op


def _ops_per_s(op: Callable[[int], None]) -> float:
    return median_of(lambda: rate(OPS, lambda: [op(i) for i in range(OPS)]))


def run() -> list[Result]:
    ours = _ops_per_s(_vault())
    peers = [
        ("AWS Encryption SDK, raw AES key", _ops_per_s(_aws(cached=False)), ""),
        ("AWS Encryption SDK, caching CMM", _ops_per_s(_aws(cached=True)), "reuses data keys"),
        ("Tink KmsEnvelopeAead", _ops_per_s(_tink()), ""),
    ]
    return [
        Result(
            "Envelope seal+open of 1 KiB, fresh data key (vault-service)",
            ours,
            "ops/s",
            name,
            theirs,
            note or "goal: ratio > 1",
        )
        for name, theirs, note in peers
    ]
