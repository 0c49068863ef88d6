"""The context encoding is injective; key types never reveal their bytes."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault_service.crypto import Context, DataKey, SubjectKey, decode_context

names = st.text(min_size=0, max_size=12)
contexts = st.builds(Context, names, st.dictionaries(names, names, max_size=5))


@given(contexts)
def test_encoding_round_trips(ctx: Context) -> None:
    assert decode_context(ctx.encode()) == ctx


@given(contexts, contexts)
def test_encoding_is_injective(a: Context, b: Context) -> None:
    if a != b:
        assert a.encode() != b.encode()
    else:
        assert a.encode() == b.encode()


def test_classic_concatenation_ambiguities_are_distinct() -> None:
    assert Context("d", {"a": "bc"}).encode() != Context("d", {"ab": "c"}).encode()
    assert Context("d", {"a": "", "b": ""}).encode() != Context("d", {"a": "b"}).encode()
    assert Context("da", {}).encode() != Context("d", {"a": ""}).encode()


@pytest.mark.parametrize("bad", [b"", b"vsctx1", b"vsctx1\x00\x00\x00\x05ab", b"xxxx"])
def test_decoder_rejects_garbage(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_context(bad)


def test_key_bytes_never_in_repr_str_format_logs(caplog: pytest.LogCaptureFixture) -> None:
    material = bytes(range(100, 132))
    key = SubjectKey(material)
    texts = [repr(key), str(key), f"{key}", f"{key!r}", "%s" % (key,), repr([key])]  # noqa: UP031
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("key=%s", key)
    texts.append(caplog.text)
    for text in texts:
        assert material.hex() not in text and str(material) not in text
        assert "redacted" in text


def test_keys_cannot_be_pickled_or_copied() -> None:
    key = DataKey.generate()
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(key, protocol=proto)
    with pytest.raises(TypeError):
        copy.copy(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_key_size_and_destroy() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(b"short")
    key = DataKey.generate()
    key.destroy()
    with pytest.raises(ValueError, match="destroyed"):
        key.unsafe_bytes()


@pytest.mark.parametrize(
    "domain,items",
    [
        ("x" * 65537, {}),
        ("d", {"x" * 65537: "v"}),
        ("d", {"a": "v", "b": "x" * 65537}),
        ("d", {"a": "é" * 32769}),  # 65,538 bytes in UTF-8: bytes count, not characters
    ],
)
def test_an_item_longer_than_64_kib_is_refused(domain: str, items: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="too long"):
        Context(domain, items)


def test_items_of_64_kib_each_are_accepted_and_non_strings_refused() -> None:
    ctx = Context("d", {"a": "x" * 65536, "b": "y" * 65536})
    assert decode_context(ctx.encode()) == ctx
    with pytest.raises(TypeError):
        Context("d", {"a": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        Context("d", {1: "a", "b": "c"})  # type: ignore[dict-item]


def test_a_context_copies_and_pickles_as_an_equal_immutable_value() -> None:
    ctx = Context("payload", {"record": "r1", "field": "text"})
    for again in (copy.copy(ctx), copy.deepcopy(ctx), pickle.loads(pickle.dumps(ctx))):
        assert again == ctx and again.encode() == ctx.encode() and hash(again) == hash(ctx)
    with pytest.raises(AttributeError):
        ctx.domain = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.items["record"] = "r2"  # type: ignore[index]
