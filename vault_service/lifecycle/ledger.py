"""The destruction ledger: every destruction the vault owes, kept outside the record store.

A database restored from a backup still holds whatever was destroyed after the backup was taken:
an erased subject's wrapped key, a shredded record's data key, a replaced version, a revoked
share's key. The ledger lives on other storage (``[lifecycle] ledger_path``), is append-only, and
is replayed at start-up before the server serves (:mod:`.replay`): whatever it says was destroyed
is destroyed again. Its lines are kept by a :class:`~.ledger_store.LedgerStore`: a file, or an
S3-compatible bucket with conditional writes (``[lifecycle] ledger_s3_bucket``, :mod:`.ledger_s3`).

Every destruction is appended **before** the store changes (if the ledger cannot be written,
nothing is destroyed: UNAVAILABLE), with its state:

- ``done``: carried out now (no legal hold applied);
- ``deferred``: asked for while a legal hold applied; the store recorded it for the hold's
  release, which carries it out (and appends ``done``).

The last entry of an object wins, with one exception: a record once released by its read-once
read stays consumed whatever entry follows (a delete asked for under a hold, say), so that a
replay never lets it be released again. Objects: a ``subject`` (erasure; with the root-key versions that
could have wrapped its key, for deletion verification), a ``record`` (delete, retention,
read-once), a record ``version`` (the one an update replaced), a ``share`` (revoked or expired),
a ``consent`` grant (revoked: a withdrawn consent must not come back with a backup either).

Format: JSON lines, each a signed batch of entries written with one fsync (the share sweep notes
all the shares it destroys in one batch; a record shred is its own line, so that a crash between
two shreds leaves each one either done and ledgered or not started)::

    {"format": "vault-destruction-ledger/v2", "entries": [...], "public_key": hex, "signature": hex}

signed with the service's Ed25519 key over ``"vault-destruction-ledger/v2\\0" || canonical JSON``.
Lines of the first format (one signed subject erasure each, ``vault-erasure-ledger/v1``) are read as
``done`` subject erasures. A bad signature or a malformed line stops the replay: the server refuses
to start rather than guess.

The lines are also the leaves of a Merkle tree (RFC 6962, leaf data = the line's bytes without
its newline): after each append the tree's checkpoint is signed and given to the witness with the
new lines (:mod:`.ledger_sync`, through :attr:`DestructionLedger.after_append`), so that a line
removed, edited or reordered breaks the proofs, and a ledger restored with the data directory is
repaired from the witness before the replay.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vault_service.crypto.signing import SigningKey, verify_signature
from vault_service.lifecycle.ledger_store import FileLedgerStore, LedgerStore

FORMAT = "vault-destruction-ledger/v2"

#: the cause of a read-once record's destruction (released once: it stays consumed)
READ_ONCE_CAUSE = "read-once"
_V1_PREFIX = b"vault-erasure-ledger/v1\x00"


class LedgerTampered(Exception):
    """A line's signature does not verify, or a line is malformed: the ledger was edited."""


class Kind(enum.StrEnum):
    """What was destroyed."""

    SUBJECT = "subject"
    RECORD = "record"
    VERSION = "version"
    SHARE = "share"
    #: a consent grant's revocation (withdrawn consent must not come back with a backup either)
    CONSENT = "consent"


class State(enum.StrEnum):
    """Whether the destruction was carried out or waits for a legal hold's release."""

    DONE = "done"
    DEFERRED = "deferred"
    #: the destruction did not happen after all (a read-once read that lost to an update of the
    #: record: the new version stays): replay and verification leave the object alone
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Destruction:
    """One ledger entry. ``object_id`` is the record or share id ("" for a subject); ``version``
    the destroyed version of a ``version`` entry (0 otherwise)."""

    kind: Kind
    subject_ref: bytes
    state: State
    at: float
    object_id: str = ""
    version: int = 0
    #: for subject erasures: every root version that could have wrapped the subject key
    root_versions: tuple[str, ...] = ()
    #: why, for people reading the ledger ("erasure", "retention", "read-once", "update" ...)
    cause: str = ""
    #: set by :meth:`DestructionLedger.latest`, never written: an entry of this object (this
    #: one or an earlier one) is a read-once release
    consumed: bool = False
    #: set by :meth:`DestructionLedger.latest`, never written: the cause of the object's first
    #: entry (a hold's release or a replay that carries a destruction out keeps its cause)
    origin: str = ""

    @property
    def key(self) -> tuple[str, bytes, str, int]:
        """The destroyed object (its last entry is its state)."""
        return (self.kind.value, self.subject_ref, self.object_id, self.version)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "subject_ref": self.subject_ref.hex(),
            "state": self.state.value,
            "at": self.at,
            "object_id": self.object_id,
            "version": self.version,
            "root_versions": list(self.root_versions),
            "cause": self.cause,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Destruction:
        return Destruction(
            Kind(d["kind"]),
            bytes.fromhex(d["subject_ref"]),
            State(d["state"]),
            float(d["at"]),
            str(d["object_id"]),
            int(d["version"]),
            tuple(str(v) for v in d["root_versions"]),
            str(d["cause"]),
        )


def _signed_bytes(entries: list[dict[str, Any]], public_key: str) -> bytes:
    body = json.dumps({"entries": entries, "public_key": public_key}, sort_keys=True)
    return FORMAT.encode() + b"\x00" + body.encode()


def _v1_signed_bytes(d: dict[str, Any]) -> bytes:
    body = {k: d[k] for k in ("subject_ref", "erased_at", "root_versions", "public_key")}
    return _V1_PREFIX + json.dumps(body, sort_keys=True).encode()


class DestructionLedger:
    """Append-only signed lines in a :class:`~.ledger_store.LedgerStore` (a file at ``path``,
    or an S3-compatible bucket: :mod:`.ledger_s3`). Thread-safe appends."""

    def __init__(self, store: LedgerStore | Path) -> None:
        self.store = FileLedgerStore(store) if isinstance(store, Path) else store
        #: called after each durable append (the witness sync); its failures are its own
        self.after_append: Callable[[SigningKey], None] | None = None

    def __repr__(self) -> str:
        return f"DestructionLedger({self.store.where!r})"

    @property
    def where(self) -> str:
        """Where the lines are (a path or an s3:// address), for messages."""
        return self.store.where

    @property
    def path(self) -> Path:
        """The file of a ledger kept in a file."""
        if not isinstance(self.store, FileLedgerStore):
            raise AttributeError(f"the ledger at {self.store.where} is not a file")
        return self.store.path

    def locked(self, exclusive: bool) -> AbstractContextManager[None]:
        """Appends share this lock; a repair that rewrites the ledger holds it alone."""
        return self.store.locked(exclusive)

    def lines(self) -> list[bytes]:
        """Every line's bytes (without the newline), in order: the tree's leaves."""
        return self.store.lines()

    def rewrite(
        self,
        lines: Sequence[bytes] | Callable[[list[bytes]], Sequence[bytes]],
        public_key: bytes,
    ) -> None:
        """Replace the ledger by ``lines``, or by ``lines(current lines)`` (a repair from the
        witness; the caller holds the lock exclusively): each must verify, then the store
        replaces the lines whole."""
        build = lines if callable(lines) else (lambda _current: lines)

        def checked(current: list[bytes]) -> Sequence[bytes]:
            new = build(current)
            for n, line in enumerate(new, start=1):
                parse_line(line, public_key, n)
            return new

        self.store.rebuild(checked)

    def append(self, signer: SigningKey, entries: Sequence[Destruction]) -> None:
        """Sign and durably append ``entries`` as one line; Unavailable if it cannot be written."""
        if not entries:
            return
        body = [e.to_json() for e in entries]
        public = signer.public_key().hex()
        line = {
            "format": FORMAT,
            "entries": body,
            "public_key": public,
            "signature": signer.sign(_signed_bytes(body, public)).hex(),
        }
        self.store.append(json.dumps(line, sort_keys=True).encode())
        if self.after_append is not None:
            self.after_append(signer)

    def entries(self, public_key: bytes) -> list[Destruction]:
        """Every entry in order, each line verified against ``public_key``; LedgerTampered on a
        bad one."""
        out: list[Destruction] = []
        for n, line in enumerate(self.store.lines(), start=1):
            out.extend(parse_line(line, public_key, n))
        return out

    def latest(self, public_key: bytes) -> list[Destruction]:
        """The last entry of every object, in the order of those last entries; ``consumed`` set
        on it if an entry of the object was a read-once release (not cancelled since), and
        ``origin`` to the cause of its first entry (since the last cancellation)."""
        last: dict[tuple[str, bytes, str, int], Destruction] = {}
        consumed: set[tuple[str, bytes, str, int]] = set()
        origin: dict[tuple[str, bytes, str, int], str] = {}
        for entry in self.entries(public_key):
            key = entry.key
            if entry.state is State.CANCELLED:
                consumed.discard(key)
                origin.pop(key, None)
            else:
                if entry.cause == READ_ONCE_CAUSE:
                    consumed.add(key)
                origin.setdefault(key, entry.cause)
            last.pop(key, None)
            last[key] = entry
        return [
            replace(e, consumed=key in consumed, origin=origin.get(key, e.cause))
            for key, e in last.items()
        ]

    def record_destructions(self, public_key: bytes) -> list[Destruction]:
        """The latest entry of every record destruction (delete, retention, read-once)."""
        return [e for e in self.latest(public_key) if e.kind is Kind.RECORD]

    def subject_erasures(self, public_key: bytes) -> list[Destruction]:
        """The latest entry of every subject erasure (done or deferred)."""
        return [e for e in self.latest(public_key) if e.kind is Kind.SUBJECT]


def parse_line(line: bytes, public_key: bytes, n: int = 1) -> list[Destruction]:
    """The entries of one ledger line (its bytes without the newline, as :meth:`lines` gives
    them), its signature verified against ``public_key``; LedgerTampered (naming line ``n``)
    on a bad one. A deletion certificate's ledger proof embeds a line: a verifier reads it so."""
    try:
        text = line.decode()
    except UnicodeDecodeError:
        raise LedgerTampered(f"destruction ledger line {n} is malformed") from None
    return list(_parse(text, n, public_key))


def _parse(line: str, n: int, public_key: bytes) -> Iterable[Destruction]:
    try:
        d = json.loads(line)
        if d.get("format") == FORMAT:
            if set(d) != {"format", "entries", "public_key", "signature"}:
                raise ValueError("unexpected keys")
            signed = _signed_bytes(d["entries"], d["public_key"])
            entries = [Destruction.from_json(e) for e in d["entries"]]
        else:  # a line of the first format: one subject erasure
            if set(d) != {"subject_ref", "erased_at", "root_versions", "public_key", "signature"}:
                raise ValueError("unexpected keys")
            signed = _v1_signed_bytes(d)
            entries = [
                Destruction(
                    Kind.SUBJECT,
                    bytes.fromhex(str(d["subject_ref"])),
                    State.DONE,
                    float(d["erased_at"]),
                    root_versions=tuple(str(v) for v in d["root_versions"]),
                    cause="erasure",
                )
            ]
        signer, signature = str(d["public_key"]), bytes.fromhex(str(d["signature"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise LedgerTampered(f"destruction ledger line {n} is malformed") from None
    if signer != public_key.hex() or not verify_signature(public_key, signature, signed):
        raise LedgerTampered(f"destruction ledger line {n} has an invalid signature")
    return entries
