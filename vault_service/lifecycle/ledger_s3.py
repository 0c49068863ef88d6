"""The destruction ledger's lines in an S3-compatible bucket, ordered by conditional writes
(``[lifecycle] ledger_path = "s3://bucket/prefix/"``): the scale option of :mod:`.ledger_store`,
for vaults whose processes or replicas share no file system, and to keep the ledger on other
storage than the database and its backups.

Layout under the prefix::

    heads/<seq:08d>      a generation of the lines (JSON: gen, its name; base, the number of
                         lines in its base); the highest seq is current, none at all means
                         generation g00000000
    <gen>/base           the lines a repair wrote (newline-terminated), absent in g00000000
    <gen>/L<index:012d>  one appended line (its index counts the base's lines), or, empty,
                         the seal that ends the generation
    checkpoint           the ledger's latest cosigned checkpoint note (a copy)

**Appends** (:meth:`S3LedgerStore.append`): PutObject of ``<gen>/L<n>`` with
``If-None-Match: *``, where n is one past the last index this process saw. Exactly one writer
creates index n; a 412 (or 409) means another process (or another vault on the same bucket)
appended first: list from n, and try again one past the last index found, a compare-and-swap
on the end of the log. So no two appends take one index and none overwrites another: no line is
lost or duplicated, whatever the number of writers, without a lock. A line is durable once its
PUT succeeded (S3 acknowledges only stored objects), and every later LIST and GET sees it.

**A repair** (:meth:`S3LedgerStore.rebuild`, the ledger restored from the witness) must replace
the lines without losing an append that lands meanwhile. It **seals** the current generation:
an empty object created with ``If-None-Match: *`` at the next free index, so that no append can
take that index or any after it (an append only takes one past an index it saw, and the seal is
the last). It then reads the generation up to the seal (frozen now), writes the new lines as the
next generation's base, and commits it by creating ``heads/<seq+1>`` with ``If-None-Match: *``
(one repair wins; a loser retries on the new generation). Appends that meet the seal wait for the
new head (up to ``seal_wait_seconds``) and go on there; if none comes (the repairer died), the
appender finishes the job with the sealed lines unchanged. Old generations stay in the bucket as
history. A crash anywhere leaves either the old generation current or the new one whole.

**Reading** (:class:`S3Cursor`): a list of the current generation from the last key read (the
last key itself included: its ETag must not have changed, else the tail was edited and every
line is read again), and a GET of each new line: O(new lines). A new head (a repair) restarts.
The start-up and continuous check (:meth:`S3Cursor.read_whole`) lists the whole generation and
compares every key and ETag with what was read: an object overwritten, deleted or inserted
anywhere restarts the tree (an overwrite changes the ETag: S3 computes it from the new bytes).
An empty S3 ledger (a bucket emptied) is a ledger behind the witness, repaired from it.

There is no ``flock`` on S3: :meth:`S3LedgerStore.locked` is no lock at all; the conditional
writes above are what orders appends, and the seal what excludes them from a repair.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass

from vault_service.audit.appended import ReadCounters
from vault_service.audit.s3_objects import Bucket, Listed, failing_as
from vault_service.lifecycle.ledger_store import (
    LedgerCursor,
    LedgerRead,
    LedgerStore,
    unavailable,
)

FIRST_GENERATION = "g00000000"
#: how many GETs a whole read runs at once
_PARALLEL_GETS = 8


@dataclass(frozen=True)
class Head:
    """The current generation: its sequence number, name, and the number of lines in its base."""

    seq: int
    gen: str
    base: int

    def key(self, index: int) -> str:
        return f"{self.gen}/L{index:012d}"


def _index_of(key: str) -> int:
    return int(key.rsplit("/L", 1)[1])


class S3LedgerStore(LedgerStore):
    """The ledger's lines in ``bucket`` (see the module docstring). Thread-safe."""

    def __init__(self, bucket: Bucket, seal_wait_seconds: float = 30.0) -> None:
        self.bucket = bucket
        self.where = repr(bucket)
        self.seal_wait_seconds = seal_wait_seconds
        self._lock = threading.Lock()
        # where this process's next append goes: (head, index), learned from a listing
        self._next: tuple[Head, int] | None = None
        # heads are written once: each one's content, by key
        self._heads: dict[str, Head] = {}

    def __repr__(self) -> str:
        return f"S3LedgerStore({self.where!r})"

    def locked(self, exclusive: bool) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    # -- the generation ----------------------------------------------------------------------

    def head(self) -> Head:
        """The current generation (one LIST of ``heads/``)."""
        with failing_as(unavailable):
            last: Listed | None = None
            for last in self.bucket.listing("heads/"):  # noqa: B007 - the last one is current
                pass
            if last is None:
                return Head(0, FIRST_GENERATION, 0)
            known = self._heads.get(last.key + last.etag)
            if known is not None:
                return known
            got = self.bucket.get(last.key)
            if got is None:
                raise OSError("head vanished")
            doc = json.loads(got[0])
            head = Head(int(last.key.rsplit("/", 1)[1]), str(doc["gen"]), int(doc["base"]))
            self._heads[last.key + last.etag] = head
            return head

    def listing(self, head: Head, start_after: str = "") -> list[Listed]:
        """The generation's appended lines (and its seal), in order, after ``start_after``."""
        with failing_as(unavailable):
            return list(self.bucket.listing(f"{head.gen}/L", start_after))

    def base_etag(self, head: Head) -> str:
        """The ETag of the generation's base as listed ("" if it has none)."""
        if head.base == 0:
            return ""
        with failing_as(unavailable):
            for item in self.bucket.listing(f"{head.gen}/base"):
                return item.etag
        return ""

    def _end(self, head: Head, after: int) -> tuple[int, bool]:
        """One past the last index of the generation from index ``after`` on, and whether the
        last object is the seal."""
        start = head.key(after - 1) if after > head.base else ""
        listed = self.listing(head, start)
        if not listed:
            return max(after, head.base), False
        return _index_of(listed[-1].key) + 1, listed[-1].size == 0

    # -- appends -----------------------------------------------------------------------------

    def append(self, line: bytes) -> None:
        if not line:
            raise ValueError("a ledger line is never empty")
        deadline = time.monotonic() + self.seal_wait_seconds + 60.0
        while time.monotonic() < deadline:
            with self._lock:
                at = self._next
            if at is None:
                head = self.head()
                at = self._position(head, head.base)
            head, index = at
            with failing_as(unavailable):
                taken = not self.bucket.put_new(head.key(index), line)
            if not taken:
                with self._lock:
                    self._next = (head, index + 1)
                return
            # another writer took the index: one past the last one there (past the seal, in
            # the next generation)
            at = self._position(head, index)
            with self._lock:
                self._next = at
        raise unavailable()

    def _position(self, head: Head, after: int) -> tuple[Head, int]:
        """Where the next append goes: one past the last index from ``after`` on, or, when the
        generation is sealed, in the one after it."""
        end, sealed = self._end(head, after)
        while sealed:
            head = self._after_seal(head, end - 1)
            end, sealed = self._end(head, head.base)
        return head, end

    def _after_seal(self, sealed: Head, seal_at: int) -> Head:
        """The generation after ``sealed``: the one a repair commits, waited for; or, if none
        comes in time, the sealed lines committed unchanged by this process."""
        deadline = time.monotonic() + self.seal_wait_seconds
        while time.monotonic() < deadline:
            head = self.head()
            if head.seq > sealed.seq:
                return head
            time.sleep(0.2)
        self._commit(sealed, seal_at, lambda lines: lines)
        return self.head()

    # -- reads -------------------------------------------------------------------------------

    def lines(self) -> list[bytes]:
        return self.cursor().read().lines

    def cursor(self) -> S3Cursor:
        return S3Cursor(self)

    def base_lines(self, head: Head) -> tuple[list[bytes], str]:
        """The lines of the generation's base as they are, and its ETag ("" without a base).
        A base that is gone holds no lines: the ledger is then behind the witness, which
        repairs it."""
        if head.base == 0:
            return [], ""
        with failing_as(unavailable):
            got = self.bucket.get(f"{head.gen}/base")
        if got is None:
            return [], ""
        return [line for line in got[0].split(b"\n")[:-1] if line], got[1]

    def get_all(self, keys: Sequence[str]) -> list[tuple[bytes, str] | None]:
        """The objects at ``keys`` (bytes, ETag; None if gone), a few at a time."""
        with failing_as(unavailable):
            if len(keys) < 2:
                return [self.bucket.get(key) for key in keys]
            with ThreadPoolExecutor(_PARALLEL_GETS) as pool:
                return list(pool.map(self.bucket.get, keys))

    # -- the repair --------------------------------------------------------------------------

    def rebuild(self, build: Callable[[list[bytes]], Sequence[bytes]]) -> None:
        for _ in range(3):
            head = self.head()
            seal_at = self._seal(head)
            if self._commit(head, seal_at, build):
                return
        raise unavailable()

    def _seal(self, head: Head) -> int:
        """Seal the generation (see the module docstring); returns the seal's index (the one
        already there if another repair sealed it first)."""
        end, sealed = self._end(head, head.base)
        while not sealed:
            with failing_as(unavailable):
                if self.bucket.put_new(head.key(end), b""):
                    return end
            end, sealed = self._end(head, end)
        return end - 1

    def _commit(
        self, sealed: Head, seal_at: int, build: Callable[[list[bytes]], Sequence[bytes]]
    ) -> bool:
        """Write ``build(the sealed lines)`` as the next generation's base and commit it; False
        if another process committed that generation first."""
        lines, _ = self.base_lines(sealed)
        keys = [item.key for item in self.listing(sealed) if _index_of(item.key) < seal_at]
        for got in self.get_all(keys):
            if got is None:
                raise unavailable()
            lines.append(got[0])
        new = list(build(lines))
        nxt = Head(sealed.seq + 1, f"g{sealed.seq + 1:08d}-{secrets.token_hex(4)}", len(new))
        with failing_as(unavailable):
            if not self.bucket.put_new(f"{nxt.gen}/base", b"".join(line + b"\n" for line in new)):
                raise unavailable()
            head_doc = json.dumps({"gen": nxt.gen, "base": nxt.base}).encode()
            if not self.bucket.put_new(f"heads/{nxt.seq:08d}", head_doc):
                return False
        with self._lock:
            self._next = (nxt, nxt.base)
        return True

    # -- the checkpoint copy -----------------------------------------------------------------

    def kept_checkpoint(self) -> str | None:
        try:
            got = self.bucket.get("checkpoint")
        except OSError:
            return None
        return got[0].decode(errors="replace") if got else None

    def keep_checkpoint(self, note: str) -> None:
        self.bucket.put("checkpoint", note.encode())


class S3Cursor(LedgerCursor):
    """What one reader read of an S3 ledger (see the module docstring)."""

    def __init__(self, store: S3LedgerStore) -> None:
        self._store = store
        self.counters = ReadCounters()
        self.forget()

    def forget(self) -> None:
        self._head: Head | None = None
        self._base_etag = ""
        self._base: int = 0  # lines read from the base
        # the key and ETag of each appended line read, in order (leaf base + i)
        self._keys: list[str] = []
        self._etags: list[str] = []

    def read(self) -> LedgerRead:
        head = self._store.head()
        if head != self._head:
            return self._restart(head)
        if not self._keys:
            return self._more(self._store.listing(head))
        # from the last line read on, itself included: the tail must be as it was read
        listed = self._store.listing(head, self._keys[-2] if len(self._keys) > 1 else "")
        if not listed or (listed[0].key, listed[0].etag) != (self._keys[-1], self._etags[-1]):
            return self._restart(head)
        return self._more(listed[1:])

    def read_whole(self) -> LedgerRead:
        head = self._store.head()
        if head != self._head:
            return self._restart(head)
        listed = self._store.listing(head)
        known = len(self._keys)
        if [(item.key, item.etag) for item in listed[:known]] != list(
            zip(self._keys, self._etags, strict=True)
        ) or self._store.base_etag(head) != self._base_etag:
            return self._restart(head)
        return self._more(listed[known:])

    def _restart(self, head: Head) -> LedgerRead:
        self.forget()
        self.counters.full_reads += 1
        lines, self._base_etag = self._store.base_lines(head)
        self._base = len(lines)
        self.counters.bytes_read += sum(len(line) + 1 for line in lines)
        self._head = head
        more = self._more(self._store.listing(head))
        return LedgerRead(True, lines + more.lines)

    def _more(self, listed: list[Listed]) -> LedgerRead:
        lines: list[bytes] = []
        todo = []
        for item in listed:
            if item.size == 0:
                break  # the seal: nothing after it
            todo.append(item)
        for item, got in zip(todo, self._store.get_all([i.key for i in todo]), strict=True):
            if got is None or got[1] != item.etag:
                break  # changed since listed: the next read sees it
            self._keys.append(item.key)
            self._etags.append(item.etag)
            self.counters.bytes_read += len(got[0]) + 1
            lines.append(got[0])
        return LedgerRead(False, lines)

    def read_again(self, start: int, stop: int) -> list[bytes] | None:
        head = self._head
        if head is None:
            return None
        out: list[bytes] = []
        base = self._base
        if start < base:
            lines, etag = self._store.base_lines(head)
            if etag != self._base_etag:
                return None
            out = lines[start : min(stop, base)]
        first, last = max(start, base) - base, stop - base
        keys = self._keys[first:last] if last > first else []
        for got, etag in zip(self._store.get_all(keys), self._etags[first:last], strict=False):
            if got is None or got[1] != etag:
                return None
            out.append(got[0])
            self.counters.bytes_read += len(got[0]) + 1
        return out
