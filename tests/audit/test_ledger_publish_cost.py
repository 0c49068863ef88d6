"""Publishing the destruction ledger costs O(new lines), and keeps every guarantee.

After an append, :class:`LedgerSync` reads only the bytes appended since its last read (plus the
last line it read, re-read to check that the file is still an extension of it), and the witness
reads only the entries appended to its copy since. Whatever changed the file otherwise between
two publishes (a repair renamed a new file over it, a truncation, an edit of its tail or one
that moved the offsets) is noticed: the file is read whole and the checkpoint is the tree of the
file as it is. An edit in place that keeps every offset and the last line is left to the
continuous check, which reads the whole file and repairs it. Two processes appending to one
ledger (two LedgerSync objects, two DirectoryWitness objects on one directory) each publish the
right roots, and threads of one process too.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from vault_service.audit.publish import LocalTree, Publisher, Verdict, checkpoint_of
from vault_service.audit.witness import DirectoryWitness, LogKey, WitnessUnavailable
from vault_service.crypto.signing import SigningKey
from vault_service.lifecycle.ledger import Destruction, DestructionLedger, Kind, State
from vault_service.lifecycle.ledger_sync import LedgerSync, ledger_tree
from vault_service.lifecycle.ledger_tail import LedgerTail
from vault_service.tlog import merkle, note
from vault_service.tlog.note import Checkpoint

ORIGIN = "example.test/ledger"
REF = b"\x07" * 32


def _entry(i: int) -> Destruction:
    # fixed-width ids: every line has the same length (edits below keep the offsets)
    return Destruction(Kind.RECORD, REF, State.DONE, 10.0, f"r{i:06d}", cause="retention")


def _sync(
    path: Path, witness: DirectoryWitness, key: SigningKey
) -> tuple[DestructionLedger, LedgerSync]:
    """One process's ledger object and its sync, publishing after each append."""
    ledger = DestructionLedger(path)
    sync = LedgerSync(ledger, Publisher(witness, LogKey(ORIGIN, key.public_key())), ORIGIN)

    def after(signer: SigningKey) -> None:
        assert sync.publish(signer)

    ledger.after_append = after
    return ledger, sync


def _held(witness: DirectoryWitness, key: SigningKey) -> Checkpoint:
    held = witness.latest(LogKey(ORIGIN, key.public_key()))
    assert held is not None
    return held.checkpoint


def _file_tree(ledger: DestructionLedger) -> tuple[int, bytes]:
    tree = ledger_tree(ledger.lines())
    return tree.size, tree.root(tree.size)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def witness(tmp_path: Path) -> DirectoryWitness:
    return DirectoryWitness(tmp_path / "witness", "witness.example")


def test_publishing_after_an_append_reads_only_the_new_bytes(
    tmp_path: Path, witness: DirectoryWitness, key: SigningKey
) -> None:
    ledger, sync = _sync(tmp_path / "ledger.jsonl", witness, key)
    log = LogKey(ORIGIN, key.public_key())
    for i in range(40):
        ledger.append(key, [_entry(i)])
    assert sync.reads.full_reads == 1  # the first publish only
    for i in range(40, 45):
        before = (sync.reads.full_reads, sync.reads.bytes_read, sync.reads.bytes_checked)
        seen = witness.kept_reads(log)
        w_before = (seen.full_reads, seen.bytes_read, seen.bytes_checked)
        previous = ledger.lines()[-1]
        ledger.append(key, [_entry(i)])
        new = ledger.lines()[-1]
        # the new line, and the last line read before (the check that the file is an extension)
        assert sync.reads.full_reads == before[0]
        assert sync.reads.bytes_read - before[1] == len(new) + 1
        assert sync.reads.bytes_checked - before[2] == len(previous) + 1
        # the witness read nothing of its copy but its last line, to check that the file is
        # still what it wrote: the entry it appended at the previous publish it took as read
        (entries_file,) = list((witness.directory / "logs").rglob("entries.jsonl"))
        last_kept = entries_file.read_bytes().split(b"\n")[-3]
        seen = witness.kept_reads(log)
        assert seen.full_reads == w_before[0]
        assert seen.bytes_read == w_before[1]
        assert seen.bytes_checked - w_before[2] == len(last_kept) + 1
        held = _held(witness, key)
        assert (held.size, held.root) == _file_tree(ledger)
    assert witness.entries(log, 0) == ledger.lines()
    kept_note = sync.kept_checkpoint()
    assert kept_note is not None
    assert checkpoint_of(kept_note).size == 45
    assert note.verify_cosignature(kept_note, "witness.example", witness.public_key()) > 0


class _Recorder(Publisher):
    """A publisher that records what it is given (the checkpoint and the tree) and cosigns
    nothing: the checkpoint LedgerSync signs is what is checked."""

    def __init__(self, key: SigningKey, witness: DirectoryWitness) -> None:
        super().__init__(witness, LogKey(ORIGIN, key.public_key()))
        self.published: list[tuple[Checkpoint, int, list[bytes]]] = []

    def publish(self, signed_note: str, tree: LocalTree) -> str:
        assert tree.entries is not None
        # the lines a witness holding the last size published would be handed (asking for
        # older ones would read them again and notice a change that way: not what is tested)
        old = min(self.published[-1][0].size if self.published else 0, tree.size)
        self.published.append((checkpoint_of(signed_note), old, tree.entries(old, tree.size)))
        return signed_note

    def check(self, ledger: DestructionLedger) -> None:
        """The last checkpoint is the tree of the file as it is, its entries the file's lines."""
        checkpoint, old, entries = self.published[-1]
        assert (checkpoint.size, checkpoint.root) == _file_tree(ledger)
        assert entries == ledger.lines()[old:]


def _rewritten(ledger: DestructionLedger, key: SigningKey) -> None:
    with ledger.locked(exclusive=True):
        ledger.rewrite(ledger.lines()[:4], key.public_key())


def _rewritten_same(ledger: DestructionLedger, key: SigningKey) -> None:
    with ledger.locked(exclusive=True):
        ledger.rewrite(ledger.lines(), key.public_key())


def _truncated(ledger: DestructionLedger, key: SigningKey) -> None:
    lines = ledger.lines()
    os.truncate(ledger.path, sum(len(line) + 1 for line in lines[:7]))


def _truncated_and_refilled(ledger: DestructionLedger, key: SigningKey) -> None:
    # the same size again, with other lines at the same offsets: the tail check catches it
    size = ledger.path.stat().st_size
    _truncated(ledger, key)
    for i in range(3):
        ledger.append(key, [_entry(500 + i)])
    assert ledger.path.stat().st_size == size


def _last_line_edited(ledger: DestructionLedger, key: SigningKey) -> None:
    other = DestructionLedger(ledger.path.with_name("other.jsonl"))
    other.append(key, [_entry(900)])
    lines = ledger.lines()
    (replacement,) = other.lines()
    assert len(replacement) == len(lines[-1])
    with ledger.path.open("r+b") as f:  # in place: same inode, same size
        f.seek(sum(len(line) + 1 for line in lines[:-1]))
        f.write(replacement)


def _earlier_line_lengthened(ledger: DestructionLedger, key: SigningKey) -> None:
    lines = ledger.lines()
    lines[2] = lines[2] + b" "  # whitespace after the JSON: another leaf, every offset moved
    ledger.path.write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize(
    "change",
    [
        _rewritten,
        _rewritten_same,
        _truncated,
        _truncated_and_refilled,
        _last_line_edited,
        _earlier_line_lengthened,
    ],
)
def test_a_file_that_is_not_an_extension_is_read_whole(
    tmp_path: Path, witness: DirectoryWitness, key: SigningKey, change: Callable[..., None]
) -> None:
    ledger = DestructionLedger(tmp_path / "ledger.jsonl")
    recorder = _Recorder(key, witness)
    sync = LedgerSync(ledger, recorder, ORIGIN)
    for i in range(10):
        ledger.append(key, [_entry(i)])
    assert sync.publish(key)
    assert sync.reads.full_reads == 1
    recorder.check(ledger)
    change(ledger, key)
    assert sync.publish(key)
    assert sync.reads.full_reads == 2
    recorder.check(ledger)
    # and the next append is incremental again
    ledger.append(key, [_entry(99)])
    assert sync.publish(key)
    assert sync.reads.full_reads == 2
    recorder.check(ledger)


def test_a_repair_by_another_process_is_noticed(
    tmp_path: Path, witness: DirectoryWitness, key: SigningKey
) -> None:
    path = tmp_path / "ledger.jsonl"
    a, sync_a = _sync(path, witness, key)
    for i in range(10):
        a.append(key, [_entry(i)])
    backup = path.read_bytes()
    for i in range(10, 13):
        a.append(key, [_entry(i)])
    path.write_bytes(backup)  # the ledger restored with the data directory: 3 lines lost
    _, sync_b = _sync(path, witness, key)
    found = sync_b.reconcile(key)  # another process's start-up repairs it (a new file)
    assert (found.verdict, found.restored) == (Verdict.BEHIND, 3)
    a.append(key, [_entry(13)])  # A still holds the tree it read: it must read the new file
    assert sync_a.reads.full_reads == 2
    held = _held(witness, key)
    assert (held.size, held.root) == _file_tree(a) and held.size == 14


def test_an_edit_that_keeps_every_offset_is_repaired_by_the_check(
    tmp_path: Path, witness: DirectoryWitness, key: SigningKey
) -> None:
    """The documented limit of the cheap check: two lines of the same length swapped in the
    middle. Publishing goes on from the tree read before (the witness's copy is the true
    order); the continuous check reads the whole file, finds it forked and repairs it."""
    ledger, sync = _sync(tmp_path / "ledger.jsonl", witness, key)
    for i in range(8):
        ledger.append(key, [_entry(i)])
    truth = ledger.lines()
    swapped = [*truth[:2], truth[3], truth[2], *truth[4:]]
    ledger.path.write_bytes(b"".join(line + b"\n" for line in swapped))
    ledger.append(key, [_entry(8)])
    assert _held(witness, key).size == 9
    found = sync.reconcile(key)
    assert found.verdict is Verdict.FORKED
    assert ledger.lines()[:8] == truth
    held = _held(witness, key)
    assert (held.size, held.root) == _file_tree(ledger)


def test_lines_the_witness_lacks_are_read_again_and_checked(
    tmp_path: Path, witness: DirectoryWitness, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The witness unreachable for a few appends: when it is back, the lines it lacks are read
    again at their offsets (and checked against the tree); if one was changed meanwhile, the
    whole file is read and the checkpoint is its tree."""
    ledger = DestructionLedger(tmp_path / "ledger.jsonl")
    sync = LedgerSync(ledger, Publisher(witness, LogKey(ORIGIN, key.public_key())), ORIGIN)
    for i in range(5):
        ledger.append(key, [_entry(i)])
    assert sync.publish(key)
    real = witness.add_checkpoint

    def down(*args: object, **kwargs: object) -> str:
        raise WitnessUnavailable()

    monkeypatch.setattr(witness, "add_checkpoint", down)
    for i in range(5, 9):
        ledger.append(key, [_entry(i)])
        assert not sync.publish(key)
    monkeypatch.setattr(witness, "add_checkpoint", real)
    ledger.append(key, [_entry(9)])
    before = sync.reads.bytes_read
    assert sync.publish(key)
    lines = ledger.lines()
    # the new line, then lines 5..8 read again for the witness
    assert sync.reads.bytes_read - before == sum(len(line) + 1 for line in lines[5:10])
    assert sync.reads.full_reads == 1
    held = _held(witness, key)
    assert (held.size, held.root) == _file_tree(ledger)

    monkeypatch.setattr(witness, "add_checkpoint", down)
    for i in range(10, 13):
        ledger.append(key, [_entry(i)])
        assert not sync.publish(key)
    lines = ledger.lines()
    # two lines the witness lacks swapped in place (same offsets, not the last line)
    swapped = [*lines[:10], lines[11], lines[10], lines[12]]
    ledger.path.write_bytes(b"".join(line + b"\n" for line in swapped))
    monkeypatch.setattr(witness, "add_checkpoint", real)
    assert sync.publish(key)
    assert sync.reads.full_reads == 2
    held = _held(witness, key)
    assert (held.size, held.root) == _file_tree(ledger)
    assert witness.entries(LogKey(ORIGIN, key.public_key()), 0) == swapped


def test_two_processes_appending_each_publish_the_right_roots(tmp_path: Path, key: SigningKey) -> None:
    path, directory = tmp_path / "ledger.jsonl", tmp_path / "witness"
    # two processes: each its own ledger object, sync and witness object (one directory)
    a, sync_a = _sync(path, DirectoryWitness(directory, "w"), key)
    b, sync_b = _sync(path, DirectoryWitness(directory, "w"), key)
    order = "aabbbabaaabbab"
    for i, who in enumerate(order):
        (a if who == "a" else b).append(key, [_entry(i)])
        held = _held(DirectoryWitness(directory, "w"), key)
        assert (held.size, held.root) == _file_tree(a) and held.size == i + 1
    assert sync_a.reads.full_reads == 1 and sync_b.reads.full_reads == 1
    assert DirectoryWitness(directory, "w").entries(LogKey(ORIGIN, key.public_key()), 0) == a.lines()


def test_threads_of_one_process_publish_the_right_root(
    tmp_path: Path, witness: DirectoryWitness, key: SigningKey
) -> None:
    ledger, sync = _sync(tmp_path / "ledger.jsonl", witness, key)

    def work(t: int) -> None:
        for i in range(15):
            ledger.append(key, [_entry(t * 100 + i)])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = _held(witness, key)
    assert (held.size, held.root) == _file_tree(ledger) and held.size == 60
    assert sync.reads.full_reads == 1


def test_a_torn_last_line_is_not_a_leaf_until_its_newline(tmp_path: Path, key: SigningKey) -> None:
    ledger = DestructionLedger(tmp_path / "ledger.jsonl")
    for i in range(3):
        ledger.append(key, [_entry(i)])
    tail = LedgerTail(ledger.store)
    assert tail.refresh().size == 3
    other = DestructionLedger(tmp_path / "other.jsonl")
    other.append(key, [_entry(3)])
    line = other.path.read_bytes()
    with ledger.path.open("ab") as f:  # another process's append, half written
        f.write(line[:50])
    assert tail.refresh().size == 3
    with ledger.path.open("ab") as f:
        f.write(line[50:])
    tree = tail.refresh()
    assert (tree.size, tree.root(tree.size)) == _file_tree(ledger) and tree.size == 4
    assert tail.counters.full_reads == 1


def _publish_entries(witness: DirectoryWitness, key: SigningKey, entries: list[bytes], old: int) -> None:
    tree = ledger_tree(entries)
    signed = note.sign_note(Checkpoint(ORIGIN, tree.size, tree.root(tree.size)).body(), ORIGIN, key)
    proof = tree.consistency(old, tree.size) if 0 < old < tree.size else []
    witness.add_checkpoint(LogKey(ORIGIN, key.public_key()), old, proof, signed, entries[old:])


def test_the_witness_cache_follows_another_witness_object(tmp_path: Path, key: SigningKey) -> None:
    directory = tmp_path / "witness"
    w1, w2 = DirectoryWitness(directory, "w"), DirectoryWitness(directory, "w")
    log = LogKey(ORIGIN, key.public_key())
    entries = [b"entry %d" % i for i in range(30)]
    sizes = [3, 5, 6, 10, 11, 15, 20]
    old = 0
    for n, size in enumerate(sizes):
        _publish_entries(w1 if n % 2 == 0 else w2, key, entries[:size], old)
        old = size
    # w1 created the file (what it wrote it took as read), w2 read it whole once; after that
    # each read only what the other appended
    assert w1.kept_reads(log).full_reads == 0 and w2.kept_reads(log).full_reads == 1
    (kept_file,) = list((directory / "logs").rglob("entries.jsonl"))
    kept_lines = kept_file.read_bytes().split(b"\n")
    by_w2 = [*range(3, 5), *range(6, 10), *range(11, 15)]
    assert w1.kept_reads(log).bytes_read == sum(len(kept_lines[i]) + 1 for i in by_w2)
    assert w1.entries(log, 0) == entries[:20]
    # the witness directory restored from a backup taken at size 20, after it went on to 26:
    # the file is shorter than what w1 read (entries up to 25: same inode, copied over)
    backup = tmp_path / "backup"
    shutil.copytree(directory, backup)
    _publish_entries(w1, key, entries[:25], 20)
    _publish_entries(w1, key, entries[:26], 25)
    for name in ("entries.jsonl", "checkpoint"):
        (kept_file,) = list((backup / "logs").rglob(name))
        shutil.copyfile(kept_file, next((directory / "logs").rglob(name)))
    _publish_entries(w1, key, entries[:28], 20)
    assert w1.kept_reads(log).full_reads == 1
    assert w1.entries(log, 0) == entries[:28]
    held = w2.latest(log)
    assert held is not None and held.checkpoint.size == 28
    _publish_entries(w2, key, entries[:30], 28)  # w2's cache, two objects behind, still right
    assert w2.entries(log, 0) == entries


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 9, 16, 17])
def test_extended_root_is_the_root_of_the_extended_tree(size: int) -> None:
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(size + 9)]
    tree = merkle.MemoryTree(leaves[:size])
    tree.root()  # some nodes cached
    for k in range(10):
        assert (
            tree.extended_root(leaves[size : size + k]) == merkle.MemoryTree(leaves[: size + k]).root()
        )
    assert tree.size == size
