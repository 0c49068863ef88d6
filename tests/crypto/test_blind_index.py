"""The blind index derivation (crypto/derive.py): the normalisations as documented, and tokens
keyed per field (the same value in two fields, or under two deployments' keys, never matches)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault_service.crypto import IndexKey
from vault_service.crypto.derive import blind_index_token, normalise


@pytest.mark.parametrize(
    ("value", "how", "want"),
    [
        ("  Kim@Example.KR\t", "casefold", "kim@example.kr"),
        ("STRASSE", "casefold", "strasse"),
        ("Straße", "casefold", "strasse"),  # full folding, not lower()
        ("e\u0301", "exact", "\u00e9"),  # NFC
        ("E\u0301", "casefold", "\u00e9"),
        (" AB-12 ", "exact", " AB-12 "),  # exact keeps case and spaces
    ],
)
def test_normalisations(value: str, how: str, want: str) -> None:
    assert normalise(value, how) == want


def test_an_unknown_normalisation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise("x", "soundex")


@given(st.text(max_size=40))
def test_casefold_is_idempotent_and_equal_values_give_equal_tokens(value: str) -> None:
    key = IndexKey(b"k" * 32)
    once = normalise(value, "casefold")
    assert normalise(once, "casefold") == once
    assert blind_index_token(key, "casefold", value) == blind_index_token(key, "casefold", once)


def test_tokens_are_keyed_labelled_macs() -> None:
    key_a, key_b = IndexKey(b"a" * 32), IndexKey(b"b" * 32)
    token = blind_index_token(key_a, "casefold", "Kim@Example.KR")
    want = hmac.new(b"a" * 32, b"blind-index/v1\x00kim@example.kr", hashlib.sha256).digest()
    assert token == want  # docs/format.md: HMAC-SHA-256(key, "blind-index/v1" || 0x00 || value)
    assert blind_index_token(key_b, "casefold", "Kim@Example.KR") != token  # another field's key
    assert token != hashlib.sha256(b"kim@example.kr").digest()  # never an unkeyed hash
