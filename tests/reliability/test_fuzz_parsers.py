"""Fuzzing the two parsers that read what others wrote: the stored-payload parser (whole,
streaming, random-access) and the key unwrapper must answer every input with IntegrityError
(DATA_LOSS) and nothing else; the policy loader must answer every document with a Policy or a
ConfigError that names the source."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from vault_service.crypto import DataKey, open_payload, seal_payload, unwrap_key, wrap_key
from vault_service.crypto.chunked import CHUNK_SIZE, BytesSource
from vault_service.crypto.context import Context
from vault_service.crypto.payload import PayloadDecryptor, PayloadReader, seal_stream
from vault_service.errors import ConfigError, IntegrityError
from vault_service.policy import load_policy

KEY = DataKey.generate()
CTX = Context("payload", {"record": "r-1", "field": "text"})
PLAIN = bytes(range(256)) * ((2 * CHUNK_SIZE + 1000) // 256)  # three chunks, the last one short
SEALED = b"".join(seal_stream(KEY, CTX, [PLAIN]))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with bits flipped, bytes inserted or deleted, a slice repeated, or truncated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "delete" and data:
            del data[i : i + draw(st.integers(1, 64))]
        elif kind == "repeat" and data:
            j = draw(st.integers(i, len(data)))
            data[j:j] = data[i : min(j, i + 20_000)]
        elif kind == "truncate":
            del data[i:]
    return bytes(data)


ciphertexts = st.one_of(st.binary(max_size=300), mutated(SEALED))


@FAST
@given(ciphertexts)
def test_whole_payload_parser_answers_integrity_error_only(data: bytes) -> None:
    if data == SEALED:
        assert open_payload(KEY, CTX, data) == PLAIN
        return
    with pytest.raises(IntegrityError):
        open_payload(KEY, CTX, data)


@FAST
@given(ciphertexts, st.lists(st.integers(1, 70_000), min_size=1, max_size=6))
def test_streaming_parser_answers_integrity_error_only(data: bytes, cuts: list[int]) -> None:
    decryptor = PayloadDecryptor(KEY, CTX)
    out, pos = [], 0
    try:
        for size in [*cuts, len(data)]:
            out.append(decryptor.update(data[pos : pos + size]))
            pos += size
        out.append(decryptor.finalize())
    except IntegrityError:
        assert data != SEALED
        return
    assert data == SEALED and b"".join(out) == PLAIN


@FAST
@given(ciphertexts, st.integers(0, len(PLAIN) + 10), st.integers(0, len(PLAIN)))
def test_random_access_reader_answers_integrity_error_only(
    data: bytes, offset: int, length: int
) -> None:
    try:
        piece = PayloadReader(KEY, CTX, BytesSource(data), len(data)).read(offset, length)
    except IntegrityError:
        return
    # a read that succeeds returns exactly the original bytes of that range: a mutation outside
    # the chunks it covers is found by the reads that cover it (and by a whole read)
    assert piece == PLAIN[offset : offset + length]


@FAST
@given(st.one_of(st.binary(max_size=120), mutated(wrap_key(KEY, DataKey.generate(), CTX))))
def test_key_unwrapper_answers_integrity_error_only(data: bytes) -> None:
    kek = DataKey.generate()  # not the key it was wrapped under, or data that is not a wrapped key
    with pytest.raises(IntegrityError):
        unwrap_key(kek, data, CTX, DataKey)


def test_payload_under_its_key_still_opens() -> None:  # the fixture of the properties above
    assert open_payload(KEY, CTX, seal_payload(KEY, CTX, b"x")) == b"x"


# --- the policy loader -------------------------------------------------------------------------
POLICY = tomllib.loads((ROOT / "policies" / "clinic-matching.toml").read_text())


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return (
            '"'
            + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v)
            + '"'
        )
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "-_" for c in k) else _toml_value(k)


def to_toml(doc: dict[str, Any]) -> str:
    """Top-level tables as [a.b] headers, everything else inline."""
    lines, tables = [], []
    for k, v in doc.items():
        if isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()) and v:
            tables.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        for name, body in v.items():
            lines.append(f"[{_key(k)}.{_key(name)}]")
            lines += [f"{_key(f)} = {_toml_value(x)}" for f, x in body.items()]
    return "\n".join(lines) + "\n"


values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(["matching", "concern_text", "text", "creation", "event", "application"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _drop_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v if x is not None]
    return v


@st.composite
def mutated_policy(draw: st.DrawFn) -> str:
    """The example policy with a few values replaced, removed or added anywhere in the tree."""
    import copy

    doc = copy.deepcopy(POLICY)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        *parent_path, last = path
        parent: Any = doc
        for p in parent_path:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        else:
            parent[last] = draw(values)
    return to_toml(_drop_none(doc))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_policy(), st.text(max_size=200)))
def test_policy_loader_answers_a_policy_or_a_config_error(text: str) -> None:
    try:
        load_policy(text, "fuzz.toml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.toml")


def test_the_renderer_round_trips_the_example_policy() -> None:
    assert tomllib.loads(to_toml(POLICY)) == POLICY
    load_policy(to_toml(POLICY), "example")
