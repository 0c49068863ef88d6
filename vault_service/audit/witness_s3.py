"""A witness in an S3-compatible bucket (``[witness] directory = "s3://bucket/prefix/"``): the storage of
:class:`~.witness.KeepingWitness` (whose checks it shares with the directory witness) as objects,
for a witness on other storage than the vault's database, blobs, ledger and their backups.

Layout under the prefix, per log (``logs/<slot>/``, the slot a hash of the log's origin)::

    held                 the held state: JSON {"seq", "note", "start", "entries", "kept",
                         "reset"}: the cosigned note (null after a reset), the entries
                         accepted with it (hex, leaves from index "start"), the number of
                         entries kept up to and with it
    steps/<seq:012d>     every earlier held state, written once: the history (every note and
                         reset statement), and the kept entries of the earlier checkpoints

**Updating the held checkpoint is a compare-and-swap**: the state is read with its ETag, checked
(:meth:`KeepingWitness.add_checkpoint`), archived as ``steps/<seq>`` (``If-None-Match: *``: the
same bytes whoever archives it), then replaced by a PutObject with ``If-Match: <ETag>``. Of two
vault processes racing to add a checkpoint, one wins; the other's write fails with 412 and it is
answered WitnessConflict with the size now held, so it proves its checkpoint again from there:
no checkpoint is lost, and the witness never holds one that does not extend the one before it.
The entries of a checkpoint are inside the very object the swap writes, so the kept entries are
never ahead of or behind the held checkpoint, even across crashes (an archive written by a
writer that then lost is the state that was held: harmless).

The kept entries are the archived states' entries (seq < the held one's) followed by the held
state's; this object keeps their tree in memory and, on each checkpoint, reads only the states
archived since (O(new entries)); a held state older than what it read (the bucket restored) is
read whole again.

**The cosigning key** is a seed file of its own (``[witness] key_file``, 64 hex digits, made
when missing, mode 0600): never in the bucket it witnesses from, and never where the vault's
backups are (whoever has the key and the bucket can rewrite what the witness says).

The endpoint unreachable, or a write refused (access denied): WitnessUnavailable, as a
directory witness whose storage is gone (the callers go on as for any unreachable witness).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault_service.audit.s3_objects import Bucket, failing_as
from vault_service.audit.witness import (
    KeepingWitness,
    LogKey,
    WitnessRefused,
    WitnessUnavailable,
    key_from_file,
    slot,
)
from vault_service.crypto.signing import SigningKey
from vault_service.tlog import merkle


@dataclass(frozen=True)
class _State:
    """One read of a log's held state: its ETag and content."""

    etag: str
    doc: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.doc["seq"])

    def entries(self) -> list[bytes]:
        return [bytes.fromhex(str(e)) for e in self.doc["entries"]]


@dataclass
class _Kept:
    """The tree of a log's kept entries, read up to (not including) archived state ``next``."""

    tree: merkle.MemoryTree = field(default_factory=merkle.MemoryTree)
    next: int = 0


class S3Witness(KeepingWitness):
    """A witness in ``bucket`` with its cosigning seed in ``key_file`` (see the module
    docstring). Thread-safe; any number of processes may share the bucket."""

    def __init__(self, bucket: Bucket, key_file: Path, name: str = "vault-service-witness") -> None:
        self.bucket = bucket
        self.key_file = key_file
        self.name = name
        self._key: SigningKey | None = None
        # this process's threads take turns (the cache below); processes race by the swap
        self._lock = threading.Lock()
        self._kept: dict[str, _Kept] = {}

    def __repr__(self) -> str:
        return f"S3Witness({self.bucket!r})"

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[None]:
        with self._lock:
            yield

    def _session(self) -> AbstractContextManager[None]:
        return self._serialised()

    def _signer(self) -> SigningKey:
        if self._key is None:
            try:
                self._key = key_from_file(self.key_file)
            except (OSError, ValueError):
                raise WitnessUnavailable() from None
        return self._key

    def _folder(self, log: LogKey) -> str:
        return f"logs/{slot(log.origin)}/"

    def _load(self, log: LogKey) -> tuple[str | None, Any]:
        with failing_as(WitnessUnavailable):
            got = self.bucket.get(self._folder(log) + "held")
        if got is None:
            return None, None
        try:
            state = _State(got[1], json.loads(got[0]))
            text = state.doc["note"]
            state.entries()
            if state.seq < 0 or int(state.doc["kept"]) < 0 or not isinstance(text, str | None):
                raise ValueError(state.seq)
        except (ValueError, KeyError, TypeError):
            raise WitnessRefused("the witness's own checkpoint does not verify") from None
        return text, state

    def _kept_tree(self, log: LogKey, token: Any) -> merkle.MemoryTree:
        state: _State | None = token
        if state is None:
            return merkle.MemoryTree()
        key = slot(log.origin)
        kept = self._kept.get(key)
        if kept is None or kept.next > state.seq + 1:
            kept = _Kept()  # new, or the bucket went back: read it all
        self._kept.pop(key, None)  # kept again only once it is read to the end
        if kept.next <= state.seq:
            for entries in self._archived(log, kept.next, state.seq):
                for entry in entries:
                    kept.tree.append(merkle.leaf_hash(entry))
            for entry in state.entries():
                kept.tree.append(merkle.leaf_hash(entry))
            kept.next = state.seq + 1
        if kept.tree.size == int(state.doc["kept"]):
            self._kept[key] = kept
        return kept.tree

    def _kept_size(self, log: LogKey, token: Any) -> int:
        state: _State | None = token
        return int(state.doc["kept"]) if state else 0

    def _archived(self, log: LogKey, first: int, stop: int) -> list[list[bytes]]:
        """The entries of the archived states ``first`` to ``stop - 1``."""
        if first >= stop:
            return []
        folder = self._folder(log) + "steps/"
        after = f"{folder}{first - 1:012d}" if first else ""
        with failing_as(WitnessUnavailable):
            keys = [
                item.key
                for item in self.bucket.listing(folder, after)
                if int(item.key.rsplit("/", 1)[1]) < stop
            ]
            out: list[list[bytes]] = []
            for key in keys:
                got = self.bucket.get(key)
                if got is None:
                    raise OSError("archived state vanished")
                out.append(_State(got[1], json.loads(got[0])).entries())
        return out

    def _kept_entries(self, log: LogKey, token: Any) -> list[bytes]:
        state: _State | None = token
        if state is None:
            return []
        out = [entry for entries in self._archived(log, 0, state.seq) for entry in entries]
        return out + state.entries()

    def _replace(self, log: LogKey, state: _State | None, doc: dict[str, Any]) -> bool:
        folder = self._folder(log)
        data = json.dumps(doc, sort_keys=True).encode()
        with failing_as(WitnessUnavailable):
            if state is None:
                return self.bucket.put_new(folder + "held", data)
            archived = json.dumps(state.doc, sort_keys=True).encode()
            self.bucket.put_new(f"{folder}steps/{state.seq:012d}", archived)
            return self.bucket.put_if(folder + "held", data, state.etag)

    def _store(
        self, log: LogKey, token: Any, cosigned: str, start: int, entries: Sequence[bytes]
    ) -> bool:
        state: _State | None = token
        kept = int(state.doc["kept"]) if state else 0
        doc = {
            "seq": state.seq + 1 if state else 0,
            "note": cosigned,
            "start": start,
            "entries": [e.hex() for e in entries],
            "kept": kept + len(entries),
            "reset": None,
        }
        if not self._replace(log, state, doc):
            return False
        cache = self._kept.get(slot(log.origin))
        if cache is not None and state is not None and cache.next == state.seq + 1:
            for entry in entries:  # what this process wrote need not be read back
                cache.tree.append(merkle.leaf_hash(entry))
            cache.next += 1
        return True

    def _forget(self, log: LogKey, token: Any, statement: str) -> bool:
        state: _State | None = token
        doc: dict[str, Any] = {
            "seq": state.seq + 1 if state else 0,
            "note": None,
            "start": 0,
            "entries": [],
            "kept": 0,
            "reset": statement,
        }
        self._kept.pop(slot(log.origin), None)
        return self._replace(log, state, doc)
