"""C2SP signed notes, checkpoints and Ed25519 cosignatures, pure: text in, text out.

- c2sp.org/signed-note: a text ending in a newline, a blank line, then one or more lines
  ``— <key name> base64(4-byte key ID || signature)``. Ed25519 note signatures (type 0x01) sign
  the text; verifier keys are ``<name>+<hex key ID>+base64(type || public key)``.
- c2sp.org/tlog-checkpoint: the note text ``<origin>\\n<size>\\n<base64 root>\\n`` followed by
  optional extension lines (:class:`Checkpoint`).
- c2sp.org/tlog-cosignature, v1 Ed25519 (type 0x04): a witness signs
  ``cosignature/v1\\ntime <timestamp>\\n`` + the checkpoint text, and its signature bytes are
  an 8-byte big-endian timestamp followed by the 64-byte signature.

Parsing is strict (the spec's MUSTs, canonical base64, lowercase hex) and raises ValueError;
verification raises :class:`NoteError` (a ValueError) and never returns an unverified text.
Timestamps are given by the caller: this module reads no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from vault_service.crypto.signing import SigningKey, verify_signature
from vault_service.tlog.merkle import EMPTY_ROOT, HASH_SIZE

#: signature type of an Ed25519 note signature (c2sp.org/signed-note)
ED25519 = 0x01
#: signature type of a timestamped Ed25519 checkpoint cosignature (c2sp.org/tlog-cosignature)
COSIGNATURE_V1 = 0x04
#: at most this many signature lines in a note: the spec asks verifiers for a limit of at least
#: 16; golang.org/x/mod/sumdb/note stops at 100, so a note it accepts is accepted here too
MAX_SIGNATURES = 100
#: the largest cosignature timestamp (c2sp.org/tlog-cosignature: it MUST NOT exceed 2^63 - 1)
MAX_TIMESTAMP = 2**63 - 1
#: the largest tree size a checkpoint may carry: sizes are uint64 in every log implementation
MAX_TREE_SIZE = 2**64 - 1

_PUBLIC_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_KEY_ID_SIZE = 4
_TIMESTAMP_SIZE = 8
_SIG_PREFIX = "\u2014 "  # em dash, space
_COSIGNATURE_HEADER = "cosignature/v1\n"
# decimal without leading zeroes; [0-9] because str.isdigit also takes other scripts' digits
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A note that does not verify: malformed, no signature by the key, or a bad signature."""


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Standard base64 (RFC 4648 §4), padded and canonical; ValueError otherwise."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("not valid base64") from None
    # refuse the non-canonical spellings (non-zero padding bits) so one value has one text
    if _b64encode(raw) != text:
        raise ValueError("not canonical base64")
    return raw


def _check_chars(text: str, what: str) -> None:
    """Valid UTF-8 and no ASCII control character other than newline (c2sp.org/signed-note)."""
    if any(c < " " and c != "\n" for c in text):
        raise ValueError(f"{what} holds an ASCII control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8 (a lone surrogate)") from None


def _check_name(name: str) -> None:
    """A key name: non-empty, no Unicode space, no plus (c2sp.org/signed-note)."""
    if not name or "+" in name or any(c.isspace() or c < " " for c in name):
        raise ValueError(f"not a valid key name: {name!r}")
    _check_chars(name, "a key name")


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise ValueError("a note text ends with a newline")
    _check_chars(text, "a note text")


def _check_public_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != _PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {_PUBLIC_KEY_SIZE} bytes")


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: the origin, tree size and root hash a log signs (c2sp.org/tlog-checkpoint).

    Constructing one checks it (ValueError): a non-empty origin and extension lines without
    newlines or control characters, ``0 <= size < 2^64``, a 32-byte root, and the empty root
    for size 0 (the only root a tree of size 0 can have).
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line, what in [
            (self.origin, "the origin"),
            *((e, "an extension line") for e in self.extensions),
        ]:
            if not line or "\n" in line:
                raise ValueError(f"{what} of a checkpoint is one non-empty line")
            _check_chars(line, what)
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"a tree size is in 0..2^64-1, not {self.size}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise ValueError(f"a checkpoint root is {HASH_SIZE} bytes")
        if self.size == 0 and self.root != EMPTY_ROOT:
            raise ValueError("a checkpoint of size 0 has the empty tree's root")

    def body(self) -> str:
        """The note text: ``<origin>\\n<size>\\n<base64 root>\\n`` then the extension lines."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @staticmethod
    def parse(body: str) -> Checkpoint:
        """The checkpoint of a note text; ValueError on anything malformed.

        At least three non-empty lines each ending in a newline; the size in decimal without
        leading zeroes; the root canonical base64 of 32 bytes; extension lines non-empty.
        """
        if not body.endswith("\n"):
            raise ValueError("a checkpoint ends with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise ValueError("a checkpoint has at least three lines")
        if any(not line for line in lines):
            raise ValueError("a checkpoint has no empty line")
        origin, size_text, root_text, *extensions = lines
        # at most 20 digits: int() of a huge string would be slow before it is refused
        if len(size_text) > 20 or not _DECIMAL.fullmatch(size_text):
            raise ValueError("a checkpoint size is a decimal number without leading zeroes")
        root = _b64decode(root_text)
        return Checkpoint(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class Signature:
    """One signature line: the key name, the 4-byte key ID and the bytes after it.

    For a cosignature the bytes are the 8-byte timestamp and the 64-byte Ed25519 signature.
    """

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.key_id) != _KEY_ID_SIZE:
            raise ValueError(f"a key ID is {_KEY_ID_SIZE} bytes")
        if not self.signature:
            raise ValueError("a signature has at least one byte after the key ID")

    def line(self) -> str:
        """The signature line, newline included."""
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: its text (final newline included) and its signatures in order."""

    text: str
    signatures: tuple[Signature, ...]


def key_id(name: str, public_key: bytes, alg: int = ED25519) -> bytes:
    """``SHA-256(name || 0x0A || alg || public key)[:4]`` (c2sp.org/signed-note)."""
    _check_name(name)
    if not 0 <= alg <= 0xFF:
        raise ValueError(f"a signature type is one byte, not {alg}")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes, alg: int = ED25519) -> str:
    """The vkey ``<name>+<hex key ID>+<base64(alg || public key)>`` of an Ed25519 key.

    ``alg`` is :data:`ED25519` for note signatures, :data:`COSIGNATURE_V1` for a witness.
    """
    _check_public_key(public_key)
    _check_ed25519_type(alg)
    return f"{name}+{key_id(name, public_key, alg).hex()}+{_b64encode(bytes([alg]) + public_key)}"


def _check_ed25519_type(alg: int) -> None:
    if alg not in (ED25519, COSIGNATURE_V1):
        raise ValueError(f"signature type {alg:#04x} is not an Ed25519 type this module handles")


def parse_verifier_key(vkey: str, alg: int = ED25519) -> tuple[str, bytes]:
    """(name, raw 32-byte public key) of a vkey of signature type ``alg``; ValueError if malformed.

    The key ID must be 8 lowercase hex digits and match the name and key. The base64 part may
    itself hold ``+``, so the text is cut at its first two pluses only.
    """
    _check_ed25519_type(alg)
    name, plus1, rest = vkey.partition("+")
    hex_id, plus2, key_text = rest.partition("+")
    if not (plus1 and plus2) or not _KEY_ID_HEX.fullmatch(hex_id):
        raise ValueError("a verifier key is <name>+<8 hex digits>+<base64 key>")
    _check_name(name)
    raw = _b64decode(key_text)
    if len(raw) != 1 + _PUBLIC_KEY_SIZE or raw[0] != alg:
        raise ValueError(f"not an Ed25519 verifier key of type {alg:#04x}")
    public_key = raw[1:]
    if key_id(name, public_key, alg).hex() != hex_id:
        raise ValueError("the verifier key's ID does not match its name and key")
    return name, public_key


def signature_line(text: str, name: str, signer: SigningKey) -> str:
    """The Ed25519 note signature line of ``text`` by ``(name, signer)``, newline included."""
    _check_text(text)
    _check_name(name)
    kid = key_id(name, signer.public_key(), ED25519)
    return Signature(name, kid, signer.sign(text.encode("utf-8"))).line()


def sign_note(text: str, name: str, signer: SigningKey) -> str:
    """The signed note: ``text``, a blank line, and the Ed25519 signature line by ``name``.

    ``text`` must end with a newline and hold no control character but newlines (ValueError).
    To sign a note again, append :func:`signature_line` of its text with
    :func:`add_signature_lines`.
    """
    return text + "\n" + signature_line(text, name, signer)


def _parse_signature_line(line: str) -> Signature:
    """One signature line without its newline; ValueError if malformed."""
    if not line.startswith(_SIG_PREFIX):
        raise ValueError("a signature line starts with an em dash and a space")
    name, space, sig_text = line[len(_SIG_PREFIX) :].partition(" ")
    if not space or not sig_text:
        raise ValueError("a signature line is '— <name> <base64 signature>'")
    _check_name(name)
    raw = _b64decode(sig_text)
    if len(raw) <= _KEY_ID_SIZE:
        raise ValueError("a signature holds a key ID and at least one more byte")
    return Signature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:])


def open_note(note: str) -> Note:
    """Parse a signed note without verifying it; ValueError if malformed.

    The text is everything up to the last blank line (it may hold blank lines itself); after it
    come 1 to :data:`MAX_SIGNATURES` signature lines, each ending in a newline.
    """
    _check_chars(note, "a note")
    split = note.rfind("\n\n")
    if split < 0:
        raise ValueError("a note has a blank line between its text and its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise ValueError("a note ends with a signature line and its newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ValueError(f"a note has at most {MAX_SIGNATURES} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _open(note: str) -> Note:
    try:
        return open_note(note)
    except NoteError:
        raise
    except ValueError as e:
        raise NoteError(f"malformed note: {e}") from None


def _matching(parsed: Note, name: str, kid: bytes, what: str) -> list[Signature]:
    # a signature counts only when both the name and the key ID match (c2sp.org/signed-note:
    # sharing one of them with a known key is not enough, such signatures are ignored)
    found = [s for s in parsed.signatures if s.name == name and s.key_id == kid]
    if not found:
        raise NoteError(f"the note has no {what} by {name}+{kid.hex()}")
    return found


def verify_note(note: str, name: str, public_key: bytes) -> str:
    """The note's text if it carries a valid Ed25519 signature by ``(name, public_key)``.

    Raises :class:`NoteError` if the note is malformed, has no signature by that key, or if any
    signature line by that key fails to verify (the spec lets such a note be rejected whole, and
    a forged line next to a good one is an attack worth refusing). Other signatures are ignored.
    """
    try:
        _check_name(name)
        _check_public_key(public_key)
    except ValueError as e:
        raise NoteError(str(e)) from None
    parsed = _open(note)
    message = parsed.text.encode("utf-8")
    for sig in _matching(parsed, name, key_id(name, public_key, ED25519), "signature"):
        if not verify_signature(public_key, sig.signature, message):
            raise NoteError(f"invalid signature by {name}")
    return parsed.text


def open_checkpoint(note: str, origin: str, public_key: bytes) -> Checkpoint:
    """The checkpoint of a note signed by its log's key, whose name is the origin.

    :class:`NoteError` if the signature does not verify, if the text is not a checkpoint, or
    if its origin line is not ``origin``.
    """
    text = verify_note(note, origin, public_key)
    try:
        checkpoint = Checkpoint.parse(text)
    except ValueError as e:
        raise NoteError(f"not a checkpoint: {e}") from None
    if checkpoint.origin != origin:
        raise NoteError(f"the checkpoint is for {checkpoint.origin!r}, not {origin!r}")
    return checkpoint


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The bytes a v1 Ed25519 cosignature signs: ``cosignature/v1\\ntime <ts>\\n`` + the text."""
    _check_timestamp(timestamp)
    return f"{_COSIGNATURE_HEADER}time {timestamp}\n{checkpoint_text}".encode()


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a cosignature timestamp is in 0..2^63-1, not {timestamp}")


def cosign(checkpoint_text: str, name: str, signer: SigningKey, timestamp: int) -> str:
    """A tlog-cosignature/v1 signature line (type 0x04) by witness ``name`` at ``timestamp``.

    ``checkpoint_text`` is the note text (:meth:`Checkpoint.body`), not the signed note; it must
    parse as a checkpoint. ``timestamp`` is POSIX seconds, from the caller's clock. The line
    (newline included) is added to the signed checkpoint with :func:`add_signature_lines`.
    """
    Checkpoint.parse(checkpoint_text)
    _check_name(name)
    message = cosignature_message(checkpoint_text, timestamp)
    kid = key_id(name, signer.public_key(), COSIGNATURE_V1)
    raw = timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + signer.sign(message)
    return Signature(name, kid, raw).line()


def cosignature_timestamp(signature: Signature) -> int:
    """The timestamp of a v1 Ed25519 cosignature, unverified; ValueError if not of that shape."""
    if len(signature.signature) != _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE:
        raise ValueError("a v1 Ed25519 cosignature is an 8-byte timestamp and 64 bytes")
    timestamp = int.from_bytes(signature.signature[:_TIMESTAMP_SIZE], "big")
    _check_timestamp(timestamp)
    return timestamp


def verify_cosignature(note: str, name: str, public_key: bytes) -> int:
    """The timestamp of a valid v1 cosignature by witness ``(name, public_key)`` on the note.

    The note's text must be a checkpoint. With several valid cosignatures by that witness the
    latest timestamp is returned. :class:`NoteError` if the note is malformed, holds no
    cosignature by that witness, or any of its cosignature lines fails to verify. This checks
    the witness only: the log's own signature is :func:`verify_note`'s.
    """
    try:
        _check_name(name)
        _check_public_key(public_key)
    except ValueError as e:
        raise NoteError(str(e)) from None
    parsed = _open(note)
    try:
        Checkpoint.parse(parsed.text)
    except ValueError as e:
        raise NoteError(f"a cosigned note is a checkpoint: {e}") from None
    latest = -1
    for sig in _matching(parsed, name, key_id(name, public_key, COSIGNATURE_V1), "cosignature"):
        try:
            timestamp = cosignature_timestamp(sig)
        except ValueError as e:
            raise NoteError(f"malformed cosignature by {name}: {e}") from None
        message = cosignature_message(parsed.text, timestamp)
        if not verify_signature(public_key, sig.signature[_TIMESTAMP_SIZE:], message):
            raise NoteError(f"invalid cosignature by {name}")
        latest = max(latest, timestamp)
    return latest


def add_signature_lines(note: str, lines: Iterable[str]) -> str:
    """The signed ``note`` with signature ``lines`` appended (e.g. a witness's response).

    Each item is one signature line, its final newline optional. A line the note already holds,
    or that came earlier in ``lines``, is not added twice (a retried witness call adds nothing).
    ValueError if the note or a line is malformed, or the result would pass
    :data:`MAX_SIGNATURES`. Nothing is verified here.
    """
    open_note(note)
    present = set(note[note.rfind("\n\n") + 2 : -1].split("\n"))
    added: list[str] = []
    for line in lines:
        bare = line.removesuffix("\n")
        if "\n" in bare:
            raise ValueError("one signature line per item")
        _check_chars(bare, "a signature line")
        _parse_signature_line(bare)
        if bare not in present:
            present.add(bare)
            added.append(bare + "\n")
    result = note + "".join(added)
    open_note(result)
    return result
