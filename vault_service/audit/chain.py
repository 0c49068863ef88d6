"""The audit hash chain and checkpoint format (pure: no I/O).

Each entry's hash covers its sequence number, the previous entry's hash and every field, encoded
with length prefixes (so no two different entries encode alike)::

    entry_hash = SHA-256("vault-audit/v1" || prev_hash || u64(seq) || lp(at) || lp(principal) ...
                         [|| 0x01 || u64(witnessed_version)]    only when set
                         [|| 0x02 || opt(category) || opt(released_fields) || opt(role)])
                                                                only when one of them is set

where ``opt(None) = 0x00`` and ``opt(x) = 0x01 || lp(x)`` (a list: ``0x01 || u32(n) || lp(each)``).
Fields added later are hashed only when present, so entries written before them (schema 18 added
the release fields) hash as they always did and an old trail still verifies.

The first entry follows :data:`GENESIS`. Editing, deleting, inserting, reordering or duplicating an
entry breaks the chain at that entry. Rewriting the whole chain from some point on is what signed
checkpoints stop: a checkpoint signs (seq, entry_hash) of the head at a moment and is kept where the
log's own store cannot rewrite it. An *anchor* checkpoint marks where the log now starts after old
entries were pruned: (start_seq, the prev_hash the first kept entry must carry).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass

from vault_service.audit.model import AuditRow

GENESIS = bytes(32)
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_DOMAIN = b"vault-audit/v1"


def _lp(value: str) -> bytes:
    data = value.encode()
    return _U32.pack(len(data)) + data


def entry_body(row: AuditRow) -> bytes:
    """The encoding of ``row``'s fields that :func:`entry_hash` hashes after (prev_hash, seq):
    computed once per entry where it is hashed at two positions (the pending entry's MAC at its
    writer's number, then its place in the chain)."""
    parts = [
        _lp(repr(row.at)),
        _lp(row.principal),
        _lp(row.action),
        _lp(row.decision),
        _lp(row.reason),
        _lp(row.purpose),
        _lp(row.subject_pseudonym),
        _lp(row.record_id),
        _lp(row.correlation_id),
    ]
    if row.witnessed_version is not None:
        # entries written before the field existed hash as they always did
        parts.append(b"\x01" + _U64.pack(row.witnessed_version))
    if row.category is not None or row.released_fields is not None or row.role is not None:
        # likewise for the release fields (schema 18)
        parts.append(b"\x02" + _opt(row.category))
        if row.released_fields is None:
            parts.append(b"\x00")
        else:
            parts.append(b"\x01" + _U32.pack(len(row.released_fields)))
            parts.extend(_lp(name) for name in row.released_fields)
        parts.append(_opt(row.role))
    return b"".join(parts)


def chained_hash(prev_hash: bytes, seq: int, body: bytes) -> bytes:
    """:func:`entry_hash` of an entry whose :func:`entry_body` is ``body``."""
    return hashlib.sha256(_DOMAIN + prev_hash + _U64.pack(seq) + body).digest()


def entry_hash(prev_hash: bytes, seq: int, row: AuditRow) -> bytes:
    """The hash of entry ``seq`` holding ``row`` after an entry hashed ``prev_hash``."""
    return chained_hash(prev_hash, seq, entry_body(row))


def _opt(value: str | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + _lp(value)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement about the log, one line of the checkpoint store.

    kind "tree": the Merkle tree of entries 1 ... ``seq`` has root ``entry_hash``; ``note`` is
    the C2SP checkpoint note signed under the log's origin (and cosigned by the witness when
    ``witnessed``), which carries the signature (``signature`` is empty).
    kind "head" (written before the tree): entry ``seq`` has hash ``entry_hash``.
    kind "anchor": the log starts at entry ``seq``, whose prev_hash must be ``entry_hash``;
    ``prefix`` (anchors written with the tree) the hex hashes of the perfect subtrees covering
    the pruned leaves 0 ... seq - 2, left to right.
    """

    kind: str
    seq: int
    entry_hash: str
    at: float
    public_key: str
    signature: str = ""
    note: str = ""
    witnessed: bool = False
    prefix: tuple[str, ...] = ()

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers (the fields of a "head" or "anchor"; an
        anchor's prefix only when it has one, so older anchors verify as they did)."""
        body: dict[str, object] = {
            "kind": self.kind,
            "seq": self.seq,
            "entry_hash": self.entry_hash,
            "at": self.at,
            "public_key": self.public_key,
        }
        if self.prefix:
            body["prefix"] = list(self.prefix)
        return b"vault-audit-checkpoint/v1\x00" + json.dumps(body, sort_keys=True).encode()

    def to_json(self) -> str:
        data = asdict(self)
        for key, empty in (("note", ""), ("witnessed", False), ("prefix", ())):
            if data[key] in (empty, list(empty) if isinstance(empty, tuple) else empty):
                del data[key]
        if "prefix" in data:
            data["prefix"] = list(self.prefix)
        return json.dumps(data, sort_keys=True)

    @staticmethod
    def from_json(line: str) -> Checkpoint:
        data = json.loads(line)
        return Checkpoint(
            kind=str(data["kind"]),
            seq=int(data["seq"]),
            entry_hash=str(data["entry_hash"]),
            at=float(data["at"]),
            public_key=str(data["public_key"]),
            signature=str(data["signature"]),
            note=str(data.get("note", "")),
            witnessed=bool(data.get("witnessed", False)),
            prefix=tuple(str(h) for h in data.get("prefix", ())),
        )
