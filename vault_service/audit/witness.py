"""Witnesses: keepers of the latest checkpoint of each log, outside the backup set.

A witness accepts a log's checkpoint only as a **consistent extension** of the last one it holds
for that origin (RFC 6962 consistency proof), and cosigns it (C2SP tlog-cosignature). So a log
rolled back by a restore, or forked (two writers signing different trees for one origin), can
never again get a checkpoint past the witness, and the witness's copy says where the log was.

The interface follows C2SP tlog-witness's ``add-checkpoint``: the caller names the size of the
checkpoint it believes the witness holds (``old_size``) and proves the new one consistent with
it. A witness holding another size answers :class:`WitnessConflict` with its size (HTTP 409 in
tlog-witness), after which the caller retries with a proof from that size.

The witness can also **keep a log's entries** (:meth:`Witness.add_checkpoint` ``entries``): the
destruction ledger's lines, which hold no PHI (keyed subject references, object ids, times). It
checks that they are exactly the leaves of the checkpoint it cosigns, so that a restore of the
data directory *and* the ledger is repaired from the witness (:mod:`vault_service.lifecycle.
ledger_sync`).

:class:`DirectoryWitness` keeps all this in a directory that must be on other storage than the
database, the blob store and the ledger, with its own backups (which, restored, at worst forget
checkpoints: they never roll a log back, as the log is then ahead of them). Its cosigning key is
its own seed, in that directory. It keeps in memory, per log, the tree of the entries it keeps
and what it read of their file, so that accepting a checkpoint reads only the entries appended
since (by it or by another process sharing the directory): O(new entries), not O(log size). A
file changed otherwise than by an append (restored from a backup, edited) is read whole again
(:mod:`.appended`).

:class:`~.witness_s3.S3Witness` keeps the same in an S3-compatible bucket, its held checkpoints
replaced by conditional writes. Both take their checks from :class:`KeepingWitness`: only the
storage differs.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault_service.audit.appended import AppendedFile, ReadCounters
from vault_service.crypto.signing import SigningKey
from vault_service.durable import append_file, replace_file
from vault_service.errors import Unavailable
from vault_service.tlog import merkle, note
from vault_service.tlog.note import Checkpoint, NoteError


class WitnessUnavailable(Unavailable):
    """The witness could not be reached or written (nothing was accepted)."""

    default_message = "witness unavailable"


class WitnessConflict(Exception):
    """The witness holds a checkpoint of another size than the caller's ``old_size``."""

    def __init__(self, held_size: int) -> None:
        super().__init__(f"the witness holds size {held_size}")
        self.held_size = held_size


class WitnessRefused(Exception):
    """The checkpoint is not a consistent extension of what the witness holds (a rollback or a
    fork), or its signature or its entries are wrong. The message names which, never data."""


@dataclass(frozen=True)
class LogKey:
    """How a witness recognises a log: its origin and the Ed25519 key signing its notes."""

    origin: str
    public_key: bytes

    def verifier(self) -> str:
        return note.verifier_key(self.origin, self.public_key)


@dataclass(frozen=True)
class Held:
    """What a witness holds for a log: its latest cosigned checkpoint."""

    checkpoint: Checkpoint
    #: the checkpoint note with the log's signature and the witness's cosignature
    note: str


class Witness(abc.ABC):
    """A witness of one or more logs (see the module docstring)."""

    #: the witness's name in its cosignature lines
    name: str

    @abc.abstractmethod
    def public_key(self) -> bytes:
        """The witness's Ed25519 public key (to verify its cosignatures)."""

    @abc.abstractmethod
    def latest(self, log: LogKey) -> Held | None:
        """The latest checkpoint it holds for the log, None if it holds none."""

    @abc.abstractmethod
    def add_checkpoint(
        self,
        log: LogKey,
        old_size: int,
        proof: Sequence[bytes],
        signed_note: str,
        entries: Sequence[bytes] | None = None,
    ) -> str:
        """Accept ``signed_note`` if it extends the held checkpoint (of size ``old_size``)
        consistently; returns the cosigned note. ``entries``: the log's leaves from ``old_size``
        on, for a witness that keeps them. WitnessConflict, WitnessRefused, WitnessUnavailable."""

    @abc.abstractmethod
    def entries(self, log: LogKey, start: int) -> list[bytes]:
        """The kept entries of the log from index ``start`` (empty if it keeps none)."""

    @abc.abstractmethod
    def reset(self, log: LogKey, statement: str) -> None:
        """Forget the held checkpoint of a log whose history an operator acknowledged as lost
        (a restore of the database): ``statement`` is a note signed by the log's key naming the
        held size and root and the reason (:func:`reset_statement`). The witness keeps the
        statement and the checkpoint it replaces in its history, for good. Refused
        (WitnessRefused) for a log whose entries it keeps (those are repaired, never reset), or
        when the statement does not name what it holds."""


def reset_statement(held: Held, restored_size: int, reason: str) -> str:
    """The text of a reset statement (sign it with :func:`note.sign_note` under the origin)."""
    cp = held.checkpoint
    return (
        "vault-service/witness-reset/v1\n"
        f"origin {cp.origin}\n"
        f"held {cp.size} {cp.root.hex()}\n"
        f"restored {restored_size}\n"
        f"reason {' '.join(reason.split())}\n"
    )


def slot(origin: str) -> str:
    """A log's folder (or key prefix) in a witness's storage."""
    return hashlib.sha256(origin.encode()).hexdigest()[:32]


def key_from_file(path: Path) -> SigningKey:
    """A witness's cosigning key: the seed in ``path`` (64 hex digits), made (mode 0600) when
    the file does not exist. OSError or ValueError when it cannot be read or written."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(path, os.urandom(32).hex().encode())
    return SigningKey(bytes.fromhex(path.read_text().strip()))


class KeepingWitness(Witness):
    """The checks and the cosignature of a witness that keeps its own state, written once for
    every storage (:class:`DirectoryWitness`, :class:`~.witness_s3.S3Witness`): a subclass only
    reads and writes. Within :meth:`_session`, :meth:`_load` reads a log's held note and a
    token; :meth:`_store` and :meth:`_forget` replace it only if it is still what the token
    names (a compare-and-swap: False when another process changed it meanwhile)."""

    @abc.abstractmethod
    def _session(self) -> AbstractContextManager[None]:
        """What a read-check-write runs in (a lock, or nothing when the writes are conditional)."""

    @abc.abstractmethod
    def _signer(self) -> SigningKey:
        """The cosigning key (WitnessUnavailable when it cannot be read)."""

    @abc.abstractmethod
    def _load(self, log: LogKey) -> tuple[str | None, Any]:
        """The held note of the log (None if none) and the token of what was read."""

    @abc.abstractmethod
    def _kept_tree(self, log: LogKey, token: Any) -> merkle.MemoryTree:
        """The tree of the kept entries of the state ``token`` names."""

    def _kept_size(self, log: LogKey, token: Any) -> int:
        """How many entries are kept in the state ``token`` names."""
        return self._kept_tree(log, token).size

    @abc.abstractmethod
    def _kept_entries(self, log: LogKey, token: Any) -> list[bytes]:
        """Every kept entry of the state ``token`` names."""

    @abc.abstractmethod
    def _store(
        self, log: LogKey, token: Any, cosigned: str, start: int, entries: Sequence[bytes]
    ) -> bool:
        """Append ``entries`` (the leaves from index ``start``, checked against the kept ones),
        the note to the history, and make it the held checkpoint; False if the state is no
        longer the one ``token`` names (nothing was changed that counts)."""

    @abc.abstractmethod
    def _forget(self, log: LogKey, token: Any, statement: str) -> bool:
        """Keep ``statement`` in the history and hold nothing for the log; False as
        :meth:`_store`."""

    def public_key(self) -> bytes:
        with self._session():
            return self._signer().public_key()

    def latest(self, log: LogKey) -> Held | None:
        with self._session():
            return self._held(log)[0]

    def _held(self, log: LogKey) -> tuple[Held | None, Any]:
        text, token = self._load(log)
        if text is None:
            return None, token
        try:
            checkpoint = Checkpoint.parse(note.verify_note(text, log.origin, log.public_key))
        except (NoteError, ValueError):
            raise WitnessRefused("the witness's own checkpoint does not verify") from None
        return Held(checkpoint, text), token

    def entries(self, log: LogKey, start: int) -> list[bytes]:
        with self._session():
            return self._kept_entries(log, self._held(log)[1])[start:]

    def add_checkpoint(
        self,
        log: LogKey,
        old_size: int,
        proof: Sequence[bytes],
        signed_note: str,
        entries: Sequence[bytes] | None = None,
    ) -> str:
        try:
            new = Checkpoint.parse(note.verify_note(signed_note, log.origin, log.public_key))
        except (NoteError, ValueError):
            raise WitnessRefused("the checkpoint is not signed by the log's key") from None
        with self._session():
            held, token = self._held(log)
            size = held.checkpoint.size if held else 0
            if old_size != size:
                raise WitnessConflict(size)
            if held is not None:
                _check_extension(held.checkpoint, new, proof)
            if entries is not None:
                kept = self._kept_tree(log, token)
                if kept.size != size or size + len(entries) != new.size:
                    raise WitnessRefused("the entries do not fill the checkpoint")
                # the kept tree is not extended here: the entries are taken only once stored
                leaves = [merkle.leaf_hash(entry) for entry in entries]
                if kept.extended_root(leaves) != new.root:
                    raise WitnessRefused("the entries are not the checkpoint's leaves")
            if held is not None and new.size == size:
                return held.note  # the same checkpoint again: nothing to add
            cosigned = note.add_signature_lines(signed_note, [self._cosign(new)])
            if not self._store(log, token, cosigned, size, entries or ()):
                # another process moved the held checkpoint between the read and the write
                now = self._held(log)[0]
                raise WitnessConflict(now.checkpoint.size if now else 0)
            return cosigned

    def reset(self, log: LogKey, statement: str) -> None:
        try:
            text = note.verify_note(statement, log.origin, log.public_key)
        except (NoteError, ValueError):
            raise WitnessRefused("the reset is not signed by the log's key") from None
        with self._session():
            held, token = self._held(log)
            if held is None:
                return
            if self._kept_size(log, token):
                raise WitnessRefused("this log's entries are kept: it is repaired, never reset")
            cp = held.checkpoint
            if f"held {cp.size} {cp.root.hex()}\n" not in text or not text.startswith(
                f"vault-service/witness-reset/v1\norigin {cp.origin}\n"
            ):
                raise WitnessRefused("the reset does not name the checkpoint the witness holds")
            if not self._forget(log, token, statement):
                raise WitnessUnavailable("the witness changed during the reset: try again")

    def _cosign(self, checkpoint: Checkpoint) -> str:
        return note.cosign(checkpoint.body(), self.name, self._signer(), int(time.time()))


@dataclass
class _Kept:
    """What this process read of one log's ``entries.jsonl``, and the tree of those entries."""

    file: AppendedFile
    tree: merkle.MemoryTree = field(default_factory=merkle.MemoryTree)


class DirectoryWitness(KeepingWitness):
    """A witness in a directory (see the module docstring). Several processes may share it: every
    change is made under an exclusive ``flock`` of ``<dir>/lock``."""

    def __init__(self, directory: Path, name: str = "vault-service-witness") -> None:
        self.directory = directory
        self.name = name
        self._key: SigningKey | None = None
        # per log slot; read and changed only under the directory's lock (which also serialises
        # this process's threads: each takes it on its own open file)
        self._kept: dict[str, _Kept] = {}

    def __repr__(self) -> str:
        return f"DirectoryWitness({str(self.directory)!r})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            raise WitnessUnavailable() from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _session(self) -> AbstractContextManager[None]:
        return self._locked()

    def _signer(self) -> SigningKey:
        if self._key is None:
            try:
                self._key = key_from_file(self.directory / "witness.key")
            except (OSError, ValueError):
                raise WitnessUnavailable() from None
        return self._key

    def _dir(self, log: LogKey) -> Path:
        return self.directory / "logs" / slot(log.origin)

    def _load(self, log: LogKey) -> tuple[str | None, Any]:
        try:
            return (self._dir(log) / "checkpoint").read_text(), None
        except FileNotFoundError:
            return None, None
        except OSError:
            raise WitnessUnavailable() from None

    def _kept_entries(self, log: LogKey, token: Any) -> list[bytes]:
        try:
            text = (self._dir(log) / "entries.jsonl").read_text()
        except FileNotFoundError:
            return []
        except OSError:
            raise WitnessUnavailable() from None
        # a torn last piece (no newline) was never accepted
        return [_entry_of(line.encode()) for line in text.split("\n")[:-1]]

    def kept_reads(self, log: LogKey) -> ReadCounters:
        """How much of the log's kept entries this object has read (for tests and figures)."""
        kept = self._kept.get(slot(log.origin))
        return kept.file.counters if kept is not None else ReadCounters()

    def _kept_tree(self, log: LogKey, token: Any) -> merkle.MemoryTree:
        """The tree of the kept entries as the file is now (the caller holds the lock): what
        was appended since the last call is read, or all of it if the file is not an
        extension of what was read."""
        name = slot(log.origin)
        kept = self._kept.get(name)
        if kept is None:
            kept = self._kept[name] = _Kept(AppendedFile(self._dir(log) / "entries.jsonl"))
        try:
            chunk = kept.file.read()
            if chunk.restarted:
                kept.tree = merkle.MemoryTree()
            for _, line in chunk.lines():
                kept.tree.append(merkle.leaf_hash(_entry_of(line)))
        except BaseException as exc:
            # the offset may be past what the tree took: the next call reads everything again
            del self._kept[name]
            if isinstance(exc, OSError):
                raise WitnessUnavailable() from None
            raise
        return kept.tree

    def _forget(self, log: LogKey, token: Any, statement: str) -> bool:
        folder = self._dir(log)
        try:
            _append(
                folder / "history.jsonl",
                (json.dumps({"at": time.time(), "reset": statement}) + "\n").encode(),
            )
            (folder / "checkpoint").unlink()
        except OSError:
            raise WitnessUnavailable() from None
        return True

    def _store(
        self, log: LogKey, token: Any, cosigned: str, start: int, entries: Sequence[bytes]
    ) -> bool:
        folder = self._dir(log)
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if entries:
                data = "".join(
                    json.dumps({"index": start + i, "entry": e.hex()}) + "\n"
                    for i, e in enumerate(entries)
                ).encode()
                identity, at = _append(folder / "entries.jsonl", data)
                kept = self._kept.get(slot(log.origin))
                # what this process just wrote need not be read back (when nothing else lies
                # between the last read and the write: then the next read takes it all)
                if kept is not None and kept.file.took(identity, at, data):
                    for entry in entries:
                        kept.tree.append(merkle.leaf_hash(entry))
            _append(
                folder / "history.jsonl",
                (json.dumps({"at": time.time(), "note": cosigned}) + "\n").encode(),
            )
            replace_file(folder / "checkpoint", cosigned.encode())
        except OSError:
            raise WitnessUnavailable() from None
        return True


def _entry_of(line: bytes) -> bytes:
    """The entry of one line of ``entries.jsonl``."""
    return bytes.fromhex(json.loads(line)["entry"])


def _check_extension(held: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    if new.size < held.size:
        raise WitnessRefused(f"the log went back from size {held.size} to {new.size} (rolled back)")
    if new.size == held.size:
        if new.root != held.root:
            raise WitnessRefused(f"a different tree of size {new.size} (a fork)")
        return
    if not merkle.verify_consistency(held.size, new.size, held.root, new.root, proof):
        raise WitnessRefused(
            f"size {new.size} is not a consistent extension of size {held.size} (a fork or an edit)"
        )


def _append(path: Path, data: bytes) -> tuple[tuple[int, int], int]:
    """Append ``data`` durably (the caller holds the lock); returns the file's (device, inode)
    and the offset the data was written at."""
    st = append_file(path, data)
    return (st.st_dev, st.st_ino), st.st_size
