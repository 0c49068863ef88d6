"""Proofs for users (issue 18, part 8) over a real gRPC server: QueryAudit and TailAudit send each
entry with its hash, its previous hash, what its hash covers, and its RFC 6962 inclusion proof
against the signed checkpoint they also send; ``vault_service.audit.prove`` verifies them
offline, and ``vaultctl audit query --prove`` / ``audit tail --prove`` do so before printing.

The promises: a page's proofs verify against the cosigned checkpoint (computed with one read of
the tree); an edited field, a wrong index, a proof against another checkpoint fail; an entry newer
than the checkpoint comes without a proof and verifies after the next checkpoint; the commands
exit 1 naming what fails (a tampered checkpoint note, an entry edited in the database).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import re
import sqlite3
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS, ROOT
from tests.regressions import conftest as harness
from tests.regressions.conftest import ALL_TOKENS, Vault
from tests.support.serve import vaultctl
from vault_service.audit.chain import GENESIS, Checkpoint, entry_hash
from vault_service.audit.model import AuditRow
from vault_service.audit.prove import Prover, open_checkpoint, verify_event
from vault_service.audit.publish import sign_checkpoint
from vault_service.client.results import AuditEvent
from vault_service.crypto.signing import SigningKey
from vault_service.errors import PermissionDenied
from vault_service.lifecycle.audit_log import AUDIT_TREE, default_origin
from vault_service.tlog import merkle, note

clock = harness.clock
policy_text = harness.policy_text

TEXT = {"text": "t", "budget": "1"}


@pytest.fixture
def vault(request: pytest.FixtureRequest, tmp_path: Path, policy_text: str, clock: Any) -> Any:
    """A started vault whose sequencer never runs by itself: each test checkpoints when it means
    to (``_checkpoint``), so which entries a checkpoint covers is known."""
    pg: tuple[Any, ...] = ()
    if getattr(request, "param", "sqlite") == "postgres":
        pg = (request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_dsn"))
    v = harness.configure(tmp_path, policy_text, clock, *pg)
    config = tmp_path / "vault.toml"
    config.write_text(config.read_text() + "[audit]\ncheckpoint_interval_seconds = 3600.0\n")
    v.start()
    yield v
    v.close()


def _put(v: Vault, n: int) -> list[str]:
    app = v.client("app")
    return [app.put_record("member-1", "concern_text", TEXT).record_id for _ in range(n)]


def _checkpoint(v: Vault) -> Checkpoint:
    """The sequencer's run, now: integrate, sign, witness."""
    witnessing = v.running.assembly.witnessing
    assert witnessing is not None
    cp = witnessing.checkpoint(v.clock.now())
    assert cp is not None and cp.witnessed
    return cp


def _audit_key(v: Vault) -> tuple[str, bytes]:
    witnessing = v.running.assembly.witnessing
    assert witnessing is not None
    return witnessing.audit_origin, v.service.signing_key.public_key()


def _opened(v: Vault, signed: str) -> note.Checkpoint:
    origin, key = _audit_key(v)
    return open_checkpoint(signed, origin, key)


class CountingStore:
    """The record store, counting the reads of tree nodes."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.reads: list[int] = []

    def tree_nodes(self, log: str, nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
        wanted = list(nodes)
        self.reads.append(len(wanted))
        return self._store.tree_nodes(log, wanted)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


# the proofs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_query_page_verifies_against_the_cosigned_checkpoint(vault: Vault) -> None:
    """Every entry of a page the checkpoint covers is proved, with one read of the tree for the
    whole page; the query's own entry is newer than the checkpoint (tree_size 0). The note is
    the cosigned one of the checkpoint store, and its proofs are those of the stored tree."""
    _put(vault, 12)
    cp = _checkpoint(vault)
    assert cp.seq == 12
    counting = CountingStore(vault.service.audit_proofs.store)
    vault.service.audit_proofs.store = counting  # type: ignore[assignment]
    page = vault.client("auditor").query_audit_page(page_size=100)
    assert counting.reads and len(counting.reads) == 1  # one node read for the twelve proofs
    assert page.checkpoint == cp.note
    origin, key = _audit_key(vault)
    witness = vault.running.assembly.witnessing.witness  # type: ignore[union-attr]
    assert witness is not None
    cosigned = open_checkpoint(
        page.checkpoint, origin, key, ("vault-service-witness", witness.public_key())
    )
    assert (cosigned.origin, cosigned.size, cosigned.root.hex()) == (origin, 12, cp.entry_hash)
    events = page.events
    assert [e.seq for e in events] == list(range(1, 14))
    for e in events[:12]:
        assert (e.leaf_index, e.tree_size, e.checkpoint) == (e.seq - 1, 12, cp.note)
        result = verify_event(e, cosigned)
        assert (result.ok, result.proved) == (True, True), (e.seq, result.reason)
        stored = merkle.inclusion_proof(
            lambda nodes: vault.service.store.tree_nodes(AUDIT_TREE, nodes), e.leaf_index, 12
        )
        assert list(e.inclusion_proof) == stored
    own = events[12]
    assert (own.action, own.tree_size, own.inclusion_proof) == ("audit.query", 0, ())
    result = verify_event(own, cosigned)
    assert (result.ok, result.proved) == (True, False)
    assert result.reason == "newer than the checkpoint of size 12: not yet provable"
    # the chain too: each entry links to the one before it
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(events))


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_an_edited_field_a_wrong_index_and_another_checkpoint_fail(vault: Vault) -> None:
    _put(vault, 5)
    old = _checkpoint(vault)
    _put(vault, 4)
    _checkpoint(vault)
    page = vault.client("auditor").query_audit_page(page_size=9)
    checkpoint = _opened(vault, page.checkpoint)
    event = page.events[2]
    assert verify_event(event, checkpoint).proved

    def fails(forged: AuditEvent, against: note.Checkpoint = checkpoint) -> str:
        result = verify_event(forged, against)
        assert not result.ok
        return result.reason

    altered = "its fields do not hash to its entry hash (altered)"
    assert fails(dataclasses.replace(event, reason="stored elsewhere")) == altered
    assert fails(dataclasses.replace(event, at=event.at + 1)) == altered
    assert fails(dataclasses.replace(event, released_fields_recorded=True)) == altered
    assert fails(dataclasses.replace(event, witnessed_version=None)) == altered
    assert fails(dataclasses.replace(event, leaf_index=3)) == "its leaf index 3 is not seq - 1"
    # another index for the same proof does not verify either (the proof is the index's)
    leaf = merkle.leaf_hash(event.entry_hash)
    assert not merkle.verify_inclusion(leaf, 3, 9, list(event.inclusion_proof), checkpoint.root)
    # a flipped byte of the proof
    first = event.inclusion_proof[0]
    bad = (bytes([first[0] ^ 1]) + first[1:], *event.inclusion_proof[1:])
    assert fails(dataclasses.replace(event, inclusion_proof=bad)) == (
        "its inclusion proof does not verify against the checkpoint of size 9"
    )
    # a proof against another checkpoint: the older one (size 5) does not take it, even when
    # the event claims that size
    older = _opened(vault, old.note)
    assert older.size == 5
    assert fails(event, older) == "its proof is against size 9, the checkpoint's is 5"
    assert fails(dataclasses.replace(event, tree_size=5), older) == (
        "its inclusion proof does not verify against the checkpoint of size 5"
    )
    # an entry the checkpoint covers sent without its proof
    assert fails(dataclasses.replace(event, tree_size=0, inclusion_proof=())) == (
        "the checkpoint of size 9 covers it but it came without a proof"
    )
    # a note signed by another key, or under the ledger's origin, does not open
    origin, key = _audit_key(vault)
    with pytest.raises(note.NoteError):
        open_checkpoint(page.checkpoint, origin, bytes(32))
    with pytest.raises(note.NoteError):
        open_checkpoint(page.checkpoint, origin.replace("/audit/", "/ledger/"), key)


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_an_entry_written_after_the_checkpoint_verifies_after_the_next(vault: Vault) -> None:
    _put(vault, 3)
    _checkpoint(vault)
    (rid,) = _put(vault, 1)
    auditor = vault.client("auditor")
    page = auditor.query_audit_page(action="record.put")
    (newer,) = [e for e in page.events if e.record_id == rid]
    assert (newer.seq, newer.tree_size, newer.inclusion_proof) == (4, 0, ())
    result = verify_event(newer, _opened(vault, page.checkpoint))
    assert (result.ok, result.proved) == (True, False)
    cp = _checkpoint(vault)
    page = auditor.query_audit_page(action="record.put")
    (proved,) = [e for e in page.events if e.record_id == rid]
    assert proved.tree_size == cp.seq == 5  # the first query's own entry was integrated too
    assert dataclasses.replace(proved, inclusion_proof=(), tree_size=0) == dataclasses.replace(
        newer, checkpoint=proved.checkpoint
    )
    assert verify_event(proved, _opened(vault, page.checkpoint)).proved


def test_entries_with_every_optional_field_recompute_their_hash(vault: Vault) -> None:
    """A release (category, released fields, role), a put (the witnessed version), a refusal
    that knew the record (category only) and a job's entry (none): each hashes exactly."""
    (rid,) = _put(vault, 1)
    app = vault.client("app")
    app.get_record(rid, "matching")
    with pytest.raises(PermissionDenied):
        vault.client("clinic").get_record(rid, "matching")
    _checkpoint(vault)
    page = vault.client("auditor").query_audit_page()
    checkpoint = _opened(vault, page.checkpoint)
    by_action = {(e.action, e.decision): e for e in page.events}
    put = by_action["record.put", "allow"]
    assert put.witnessed_version == 1 and not put.category_recorded
    get = by_action["record.get", "allow"]
    assert get.category_recorded and get.released_fields_recorded and get.role_recorded
    assert get.category == "concern_text" and get.role == "application"
    denied = by_action["record.get", "deny"]
    assert not denied.released_fields_recorded
    prover = Prover(*_audit_key(vault))
    for e in page.events:
        result = prover.check(e, page.checkpoint)
        assert result.ok, (e.seq, result.reason)
    assert verify_event(get, checkpoint).proved


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_tail_events_carry_their_proofs_and_the_checkpoint(vault: Vault) -> None:
    """The stream sends the note once; the SDK gives it to every event after it."""
    _put(vault, 6)
    cp = _checkpoint(vault)
    events = [e for e in vault.client("auditor").tail_audit() if isinstance(e, AuditEvent)]
    assert [e.seq for e in events] == list(range(1, 8))
    assert {e.checkpoint for e in events} == {cp.note}
    prover = Prover(*_audit_key(vault))
    checks = [prover.check(e, e.checkpoint) for e in events]
    assert all(c.ok for c in checks), [c.reason for c in checks]
    assert [c.proved for c in checks] == [True] * 6 + [False]  # the tail's own entry is newer


# the commands -----------------------------------------------------------------------------------


def _cli(v: Vault, *args: str) -> subprocess.CompletedProcess[str]:
    return vaultctl(
        v.home, "--json", "audit", *args, "--address", v.address,
        env={"VAULT_SERVICE_TOKEN": ALL_TOKENS["auditor"]},
    )  # fmt: skip


def _tamper_last_note(v: Vault) -> None:
    """Replace the root in the note of the checkpoint file's last tree checkpoint."""
    path = v.home / "var" / "audit" / "checkpoints.jsonl"
    lines = path.read_text().splitlines()
    data = json.loads(lines[-1])
    assert data["kind"] == "tree"
    text = data["note"].split("\n")
    text[2] = base64.b64encode(bytes(32)).decode()  # another (well-formed) root
    data["note"] = "\n".join(text)
    path.write_text("\n".join([*lines[:-1], json.dumps(data)]) + "\n")


def test_audit_query_prove_exits_0_and_1_after_the_checkpoint_note_is_tampered(vault: Vault) -> None:
    _put(vault, 4)
    _checkpoint(vault)
    ok = _cli(vault, "query", "--prove")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["proved"] is True and data["tree_size"] == 4 and data["not_yet_provable"] == 1
    assert [e["seq"] for e in data["events"]] == [1, 2, 3, 4, 5]
    text = vaultctl(
        vault.home, "audit", "query", "--prove", "--address", vault.address,
        "--public-key", vault.service.signing_key.public_key().hex(),
        env={"VAULT_SERVICE_TOKEN": ALL_TOKENS["auditor"]},
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert text.stdout.endswith(
        "proofs OK: 4 entries included in the signed checkpoint of size 4; 2 newer than it"
        " (not yet provable: ask again)\n"
    )
    witness = vault.running.assembly.witnessing.witness  # type: ignore[union-attr]
    assert witness is not None
    cosigned = _cli(vault, "query", "--prove", "--witness-key", witness.public_key().hex())
    assert cosigned.returncode == 0, cosigned.stdout
    other = _cli(vault, "query", "--prove", "--witness-key", "22" * 32)
    assert other.returncode == 1
    assert "no cosignature by vault-service-witness" in json.loads(other.stdout)["reason"]
    wrong = _cli(vault, "query", "--prove", "--public-key", "11" * 32)
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["reason"].startswith("the checkpoint note does not verify")
    _tamper_last_note(vault)
    bad = _cli(vault, "query", "--prove")
    assert bad.returncode == 1, bad.stdout
    failed = json.loads(bad.stdout)
    assert failed["proved"] is False and failed["first_bad_entry"] is None
    assert failed["reason"].startswith("the checkpoint note does not verify: invalid signature")
    assert _cli(vault, "query").returncode == 0  # without --prove nothing is checked


def test_audit_tail_prove_names_the_first_entry_edited_in_the_database(vault: Vault) -> None:
    _put(vault, 5)
    _checkpoint(vault)
    ok = _cli(vault, "tail", "--prove")
    assert ok.returncode == 0, ok.stderr
    lines = [json.loads(line) for line in ok.stdout.splitlines()]
    assert [(d["seq"], d["proved"]) for d in lines] == [(n, n <= 5) for n in range(1, 7)]
    assert all(len(bytes.fromhex(d["entry_hash"])) == 32 for d in lines)
    assert "inclusion_proof" not in lines[0]  # the line carries no note to check it against
    with sqlite3.connect(vault.home / "data" / "vault.db") as conn:
        conn.execute("UPDATE audit_log SET reason = 'nothing happened' WHERE seq = 3")
    bad = _cli(vault, "tail", "--prove")
    assert bad.returncode == 1
    assert [json.loads(line)["seq"] for line in bad.stdout.splitlines()] == [1, 2]
    assert "entry 3: its fields do not hash to its entry hash (altered)" in bad.stderr


# the checkpoint store ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", [7, 64, 100_000])
def test_the_latest_checkpoint_is_read_from_the_end_of_the_file(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a query reads every call: the last tree checkpoint, found reading backwards in
    blocks (lines longer than a block, kinds interleaved), as ``all()`` would find it."""
    from vault_service.audit import checkpoints as module

    monkeypatch.setattr(module, "_BLOCK", block)
    store = module.FilesystemCheckpointStore(tmp_path / "checkpoints.jsonl")
    assert store.latest("tree") is None
    kinds = ["head", "tree", "tree", "anchor", "tree", "restore", "anchor"]
    for n, kind in enumerate(kinds, start=1):
        store.append(Checkpoint(kind, n, "ab" * 32, float(n), "cd" * 32, note="x" * n * 9))
        for wanted in ("tree", "anchor", "head", "restore", "none"):
            found = [c for c in store.all() if c.kind == wanted]
            assert store.latest(wanted) == (found[-1] if found else None)


# the worked example of docs/audit.md ------------------------------------------------------------

#: the example's keys: fixed seeds, so that its signatures (Ed25519 is deterministic) are too
EXAMPLE_VAULT = hashlib.sha256(b"vault-service docs: the audit key").digest()
EXAMPLE_WITNESS = hashlib.sha256(b"vault-service docs: the witness key").digest()


def _example() -> tuple[AuditEvent, str, bytes, bytes]:
    """The docs' trail of five entries: entry 2 with its proof, the cosigned note, the keys."""
    vault_key, witness_key = SigningKey(EXAMPLE_VAULT), SigningKey(EXAMPLE_WITNESS)
    t, rid, p = 1800000120.25, "01a2013c-5d2e-7b3f-9c41-6e0f8a7b2c1d", "3f9a0c2e81d4b7a6c5e4d3f2a1b0c9d8"
    rows = [
        AuditRow(t, "app", "record.put", "allow", "stored", "", p, rid, "5d0c1a2b3c4d5e6f", 1),
        AuditRow(
            t + 3.206, "app", "record.get", "allow", "released", "matching", p, rid,
            "9b1f0e2a7c3d4e5f", category="concern_text", released_fields=("budget", "text"),
            role="application",
        ),
        AuditRow(
            t + 3.75, "clinic-seoul-01", "record.get", "deny", "purpose not permitted for role",
            "matching", p, rid, "c0ffee0123456789", category="concern_text",
        ),
        AuditRow(
            t + 9.0, "auditor", "audit.query", "allow", "audit queried",
            correlation_id="77aa88bb99cc00dd",
        ),
        AuditRow(
            t + 11.5, "vault-service", "job.verify_deletion", "allow",
            "verified 0, pending 0, failed 0",
        ),
    ]  # fmt: skip
    hashes, prev = [], GENESIS
    for seq, row in enumerate(rows, start=1):
        prev = entry_hash(prev, seq, row)
        hashes.append(prev)
    tree = merkle.MemoryTree([merkle.leaf_hash(h) for h in hashes])
    origin = default_origin(vault_key.public_key(), AUDIT_TREE)
    signed = sign_checkpoint(origin, 5, tree.root(), vault_key)
    text = note.open_note(signed).text
    signed = note.add_signature_lines(
        signed, [note.cosign(text, "vault-service-witness", witness_key, 1800000131)]
    )
    row = rows[1]
    event = AuditEvent(
        2, row.at, row.principal, row.action, row.purpose, row.subject_pseudonym, row.record_id,
        row.decision, row.reason, row.correlation_id, "concern_text", ("budget", "text"),
        "application", leaf_index=1, entry_hash=hashes[1], prev_hash=hashes[0],
        inclusion_proof=tuple(tree.inclusion_proof(1)), tree_size=5, category_recorded=True,
        released_fields_recorded=True, role_recorded=True, checkpoint=signed,
    )  # fmt: skip
    return event, signed, vault_key.public_key(), witness_key.public_key()


def test_the_worked_example_of_the_docs_is_what_the_vault_computes_and_verifies() -> None:
    """docs/audit.md, "Proofs for users": the event and the note are those of the example's
    five entries (hashes, proof, signatures), the SDK proves it, and the by-hand Python of the
    section runs against the text of the section and passes every check."""
    text = (ROOT / "docs" / "audit.md").read_text()
    section = text.split("## Proofs for users", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    (event_text,) = [body for lang, body in blocks if lang == "json"]
    (code,) = [body for lang, body in blocks if lang == "python"]
    (signed,) = [body for lang, body in blocks if body.startswith("vault-service/audit/")]
    (keys,) = [body for lang, body in blocks if body.startswith("vault_key")]
    key_hex = dict(line.replace(" ", "").split("=") for line in keys.splitlines())
    event = json.loads(event_text)
    built, built_note, vault_key, witness_key = _example()
    assert event == built.as_dict()
    assert signed == built_note
    leaf = merkle.leaf_hash(built.entry_hash)
    opened = open_checkpoint(signed, default_origin(vault_key, AUDIT_TREE), vault_key)
    assert f"Leaf 1 is\n`{leaf.hex()}`" in section and f"\n`{opened.root.hex()}`:" in section
    assert key_hex == {"vault_key": vault_key.hex(), "witness_key": witness_key.hex()}
    origin = default_origin(vault_key, AUDIT_TREE)
    prover = Prover(origin, vault_key, ("vault-service-witness", witness_key))
    assert prover.check(AuditEvent.from_dict(event), signed) == prover.check(built, signed)
    assert prover.check(built, signed).proved
    exec(code, {"event": event, "note": signed, **key_hex})  # raises if a check fails
    with pytest.raises(AssertionError):
        exec(code, {"event": {**event, "reason": "withheld"}, "note": signed, **key_hex})
