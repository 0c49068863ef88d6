"""The destruction ledger file: signed batches, the last entry of an object wins, lines of the
first format still read, and any edit (an entry changed, a key added, a signature from another
key, a malformed line) stops the reading rather than being guessed around."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vault_service.crypto.signing import SigningKey
from vault_service.errors import Unavailable
from vault_service.lifecycle.ledger import Destruction, DestructionLedger, Kind, LedgerTampered, State

REF = b"\x05" * 32


def _entry(kind: Kind = Kind.RECORD, state: State = State.DONE, oid: str = "r1") -> Destruction:
    return Destruction(kind, REF, state, 10.0, oid, cause="test")


def test_batches_round_trip_and_the_last_entry_wins(tmp_path: Path) -> None:
    key = SigningKey.generate()
    ledger = DestructionLedger(tmp_path / "l.jsonl")
    ledger.append(key, [_entry(state=State.DEFERRED), _entry(Kind.SHARE, oid="s1")])
    ledger.append(key, [_entry(state=State.DONE)])
    ledger.append(key, [])  # nothing to write: no line
    assert len((tmp_path / "l.jsonl").read_text().splitlines()) == 2
    assert len(ledger.entries(key.public_key())) == 3
    latest = {(e.kind, e.object_id): e.state for e in ledger.latest(key.public_key())}
    assert latest == {(Kind.SHARE, "s1"): State.DONE, (Kind.RECORD, "r1"): State.DONE}
    assert (tmp_path / "l.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_line_of_the_first_format_is_a_done_subject_erasure(tmp_path: Path) -> None:
    key = SigningKey.generate()
    body = {
        "subject_ref": REF.hex(),
        "erased_at": 5.0,
        "root_versions": ["1"],
        "public_key": key.public_key().hex(),
    }
    signed = b"vault-erasure-ledger/v1\x00" + json.dumps(body, sort_keys=True).encode()
    line = {**body, "signature": key.sign(signed).hex()}
    (tmp_path / "l.jsonl").write_text(json.dumps(line) + "\n")
    (entry,) = DestructionLedger(tmp_path / "l.jsonl").subject_erasures(key.public_key())
    assert (entry.kind, entry.state, entry.subject_ref, entry.at) == (Kind.SUBJECT, State.DONE, REF, 5.0)
    assert entry.root_versions == ("1",)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["entries"][0].__setitem__("object_id", "r2"),
        lambda d: d["entries"].append(dict(d["entries"][0], object_id="r3")),
        lambda d: d["entries"].pop(),
        lambda d: d.__setitem__("extra", 1),
        lambda d: d.__setitem__("signature", "00" * 64),
    ],
)
def test_any_edit_stops_the_reading(tmp_path: Path, edit: object) -> None:
    key = SigningKey.generate()
    ledger = DestructionLedger(tmp_path / "l.jsonl")
    ledger.append(key, [_entry(), _entry(oid="r9")])
    line = json.loads((tmp_path / "l.jsonl").read_text())
    edit(line)  # type: ignore[operator]
    (tmp_path / "l.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(LedgerTampered):
        ledger.entries(key.public_key())


def test_a_line_signed_by_another_key_or_malformed_stops_the_reading(tmp_path: Path) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    ledger = DestructionLedger(tmp_path / "l.jsonl")
    ledger.append(other, [_entry()])
    with pytest.raises(LedgerTampered, match="line 1"):
        ledger.entries(key.public_key())
    (tmp_path / "l.jsonl").write_text("{not json\n")
    with pytest.raises(LedgerTampered, match="malformed"):
        ledger.entries(key.public_key())


def test_an_unwritable_ledger_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "l.jsonl").mkdir()  # a directory where the file should be
    with pytest.raises(Unavailable):
        DestructionLedger(tmp_path / "l.jsonl").append(SigningKey.generate(), [_entry()])


def test_a_torn_last_line_is_ignored_and_cut_by_the_next_append(tmp_path: Path) -> None:
    """A crash in the middle of an append leaves a line without its newline: nothing was
    destroyed for it (ledger first), so it is not an edit; the next append cuts it."""
    key = SigningKey.generate()
    ledger = DestructionLedger(tmp_path / "l.jsonl")
    ledger.append(key, [_entry(oid="r1")])
    with (tmp_path / "l.jsonl").open("a") as f:
        f.write('{"format": "vault-destruction-ledger/v2", "entr')
    assert [e.object_id for e in ledger.entries(key.public_key())] == ["r1"]
    ledger.append(key, [_entry(oid="r2")])
    assert [e.object_id for e in ledger.entries(key.public_key())] == ["r1", "r2"]
    assert (tmp_path / "l.jsonl").read_text().count("\n") == 2
