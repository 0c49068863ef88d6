"""The witness protocol's bodies, both ways: c2sp.org/tlog-witness ``add-checkpoint`` and this
vault's extensions (docs/audit.md, "A separate witness process"). Text in, text out: the server
(:mod:`.witness_http`) and the client (:mod:`.witness_client`) share these, so they cannot
disagree on a byte.

**add-checkpoint** (tlog-witness): an ``old <size>`` line, zero to 63 consistency proof lines
(standard base64 of a 32-byte hash each), an empty line, then the checkpoint note. Every line ends
in a newline; sizes are decimal without leading zeroes.

**The entries section** (a vault extension, ``POST /vault/add-checkpoint-with-entries``): an
``entries <count>`` line and ``count`` lines, each the standard base64 of one leaf's data, then
the add-checkpoint body unchanged. So the part after the entries is exactly what a tlog-witness
would read, and one parser serves both.

**An entries page** (``GET /vault/entries``): the same base64 lines, one leaf each.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vault_service.tlog.merkle import HASH_SIZE
from vault_service.tlog.note import MAX_TREE_SIZE

#: the tlog-witness endpoint
ADD_CHECKPOINT = "/add-checkpoint"
#: vault extensions (not in tlog-witness): the same call with the log's leaves, the held note by
#: origin (the spec's monitoring endpoint cannot tell an unknown log from one never cosigned),
#: the kept leaves, and the signed reset statement
ADD_WITH_ENTRIES = "/vault/add-checkpoint-with-entries"
LATEST = "/vault/latest"
ENTRIES = "/vault/entries"
RESET = "/vault/reset"

#: tlog-witness's content types: the cosignature lines (200) and the held size (409)
SIGNATURE_TYPE = "text/x.tlog.signature"
SIZE_TYPE = "text/x.tlog.size"
#: a signed note (the held checkpoint, a reset statement), and an entries page
NOTE_TYPE = "text/plain; charset=utf-8"
ENTRIES_TYPE = "text/x.vault.entries"

#: tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class Malformed(ValueError):
    """A body that is not what the protocol says (HTTP 400). The message names what, never data."""


@dataclass(frozen=True)
class AddCheckpoint:
    """One add-checkpoint request."""

    old_size: int
    proof: tuple[bytes, ...]
    #: the checkpoint note, as sent (unverified)
    note: str
    #: the log's leaves from ``old_size`` on (the extension), None for a plain add-checkpoint
    entries: tuple[bytes, ...] | None = None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise Malformed(f"{what} is not base64") from None
    if not raw or _b64(raw) != text:
        raise Malformed(f"{what} is not canonical non-empty base64")
    return raw


def parse_size(text: str, what: str = "a size") -> int:
    """A tree size or index: decimal without leading zeroes, at most 2^64 - 1; Malformed."""
    if not _DECIMAL.fullmatch(text) or int(text) > MAX_TREE_SIZE:
        raise Malformed(f"{what} is a decimal number without leading zeroes")
    return int(text)


def encode_entries(entries: Sequence[bytes]) -> str:
    """One base64 line per entry (each entry non-empty: ValueError otherwise)."""
    if any(not e for e in entries):
        raise ValueError("an entry is at least one byte")
    return "".join(_b64(e) + "\n" for e in entries)


def parse_entries(text: str) -> list[bytes]:
    """The entries of an entries page; Malformed."""
    if text and not text.endswith("\n"):
        raise Malformed("an entries page ends with a newline")
    return [_unb64(line, "an entry line") for line in text.split("\n")[:-1]]


def encode_add_checkpoint(
    old_size: int,
    proof: Sequence[bytes],
    signed_note: str,
    entries: Sequence[bytes] | None = None,
) -> bytes:
    """The request body (with the entries section when ``entries`` is given)."""
    if len(proof) > MAX_PROOF_LINES or any(len(p) != HASH_SIZE for p in proof):
        raise ValueError(f"a proof is at most {MAX_PROOF_LINES} hashes of {HASH_SIZE} bytes")
    head = "" if entries is None else f"entries {len(entries)}\n" + encode_entries(entries)
    body = f"old {old_size}\n" + "".join(_b64(p) + "\n" for p in proof) + "\n" + signed_note
    return (head + body).encode("utf-8")


def _line(body: str, at: int) -> tuple[str, int]:
    end = body.find("\n", at)
    if end < 0:
        raise Malformed("every line ends with a newline")
    return body[at:end], end + 1


def parse_add_checkpoint(raw: bytes, with_entries: bool = False) -> AddCheckpoint:
    """Parse a request body (``with_entries``: the extension's); Malformed. The note is only cut
    out here: the caller opens and verifies it."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("the body is not UTF-8") from None
    at = 0
    entries: tuple[bytes, ...] | None = None
    if with_entries:
        line, at = _line(body, at)
        word, _, count_text = line.partition(" ")
        if word != "entries":
            raise Malformed("the body starts with an 'entries <count>' line")
        count = parse_size(count_text, "the entries count")
        got: list[bytes] = []
        for _ in range(count):
            line, at = _line(body, at)
            got.append(_unb64(line, "an entry line"))
        entries = tuple(got)
    line, at = _line(body, at)
    word, _, size_text = line.partition(" ")
    if word != "old":
        raise Malformed("the body starts with an 'old <size>' line")
    old_size = parse_size(size_text, "the old size")
    proof: list[bytes] = []
    while True:
        line, at = _line(body, at)
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise Malformed(f"at most {MAX_PROOF_LINES} consistency proof lines")
        hash_ = _unb64(line, "a consistency proof line")
        if len(hash_) != HASH_SIZE:
            raise Malformed(f"a consistency proof line is a {HASH_SIZE}-byte hash")
        proof.append(hash_)
    if at == len(body):
        raise Malformed("a checkpoint follows the empty line")
    return AddCheckpoint(old_size, tuple(proof), body[at:], entries)


def parse_signature_lines(text: str) -> list[str]:
    """The lines of a 200 response (each starts with an em dash); Malformed."""
    if not text.endswith("\n"):
        raise Malformed("a cosignature response ends with a newline")
    lines = text[:-1].split("\n")
    if any(not line.startswith("\u2014 ") for line in lines):
        raise Malformed("a cosignature response holds signature lines only")
    return lines
