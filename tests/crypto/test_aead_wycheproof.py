"""Wycheproof AES-GCM vectors through the project's AEAD wrapper (the key-wrapping primitive)."""

from __future__ import annotations

from typing import Any

import pytest

from vault_service.crypto._primitives import Aes256Gcm, UnsupportedParameters, check_profile
from vault_service.errors import IntegrityError


def _groups(load: Any) -> list[dict[str, Any]]:
    return list(load("aes_gcm_test.json")["testGroups"])


def test_in_profile_cases(wycheproof: Any) -> None:
    ran = 0
    for g in _groups(wycheproof):
        if (g["keySize"], g["ivSize"], g["tagSize"]) != (256, 96, 128):
            continue
        for t in g["tests"]:
            key, iv = bytes.fromhex(t["key"]), bytes.fromhex(t["iv"])
            aad, msg = bytes.fromhex(t["aad"]), bytes.fromhex(t["msg"])
            ct, tag = bytes.fromhex(t["ct"]), bytes.fromhex(t["tag"])
            aead = Aes256Gcm(key)
            if t["result"] == "valid":
                assert aead.open(iv, ct, tag, aad) == msg, t["tcId"]
                assert aead.seal(iv, msg, aad) == ct + tag, t["tcId"]
            else:
                with pytest.raises(IntegrityError):
                    aead.open(iv, ct, tag, aad)
            ran += 1
    assert ran == 66


def test_out_of_profile_cases_are_refused_clearly(wycheproof: Any) -> None:
    refused = 0
    for g in _groups(wycheproof):
        if (g["keySize"], g["ivSize"], g["tagSize"]) == (256, 96, 128):
            continue
        for t in g["tests"]:
            key, iv = bytes.fromhex(t["key"]), bytes.fromhex(t["iv"])
            tag = bytes.fromhex(t["tag"])
            with pytest.raises(UnsupportedParameters, match="refused: only"):
                Aes256Gcm(key).open(iv, bytes.fromhex(t["ct"]), tag, bytes.fromhex(t["aad"]))
            refused += 1
    assert refused == 316 - 66


@pytest.mark.parametrize(
    ("key", "nonce", "tag", "what"),
    [
        (16, 12, 16, "AES-256"),
        (24, 12, 16, "AES-256"),
        (32, 8, 16, "96-bit nonces"),
        (32, 16, 16, "96-bit nonces"),
        (32, 12, 12, "128-bit tags"),
        (32, 12, 8, "128-bit tags"),
    ],
)
def test_profile_check_names_the_problem(key: int, nonce: int, tag: int, what: str) -> None:
    with pytest.raises(UnsupportedParameters, match=what):
        check_profile(key, nonce, tag)
