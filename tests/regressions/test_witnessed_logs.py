"""Issue 18: the restores that broke the logs' promises, each caught or repaired by the witness.

Tried as an operator would, through a real server (SQLite and PostgreSQL):

- the data directory restored, the ledger kept: the ledger's replay destroys again, and the audit
  trail, now behind its witnessed checkpoint, halts the release of plaintext (health
  NOT_SERVING, ``log_rollback_detected``) until ``vaultctl witness acknowledge-restore``;
- the data directory restored **and** the ledger with it: the ledger is repaired from the
  witness's copy before the replay, so the erased subject stays erased;
- one line of the ledger deleted: repaired the same way;
- the live checkpoint file kept with a restored database: ``vaultctl audit verify`` exits 1 and
  the server withholds plaintext (no longer a log line while serving goes on);
- a fork (tests/audit/test_witness.py): a second vault with the same key and origin signing
  another tree is refused by the witness, and halts;
- the witness unreachable at start-up: plaintext withheld until a check reaches it; while
  serving: serving goes on.
"""

from __future__ import annotations

import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import BACKENDS
from tests.regressions.conftest import Vault
from tests.support.db import RawDb
from vault_service.errors import NotFound, Unavailable
from vault_service.lifecycle.integrity import WITHHELD

pytestmark = pytest.mark.parametrize("vault", BACKENDS, indirect=True)

TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}


def _health(vault: Vault) -> str:
    with grpc.insecure_channel(vault.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _checkpoint(vault: Vault) -> None:
    """One run of the sequencer, as the leased job does it."""
    w = vault.running.assembly.witnessing
    assert w is not None
    w.checkpoint(vault.clock.now())


def _witness_state(vault: Vault) -> dict[str, object]:
    result = vault.vaultctl("--json", "witness", "status")
    return {"rc": result.returncode, **json.loads(result.stdout)}


def _withheld(vault: Vault, rid: str) -> None:
    with pytest.raises(Unavailable) as err:
        vault.client("app").get_record(rid, "matching")
    assert str(err.value) == WITHHELD
    with pytest.raises(Unavailable) as err:  # a search's match is a release too
        vault.client("app").find_records(
            "member_profile", "email", "member.1@example.kr", "customer_support"
        )
    assert str(err.value) == WITHHELD
    assert _health(vault) == "NOT_SERVING"


def test_data_directory_restored_halts_until_the_operator_acknowledges(vault: Vault) -> None:
    kept = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    backup = vault.backup()
    erased = vault.client("app").put_record("member-2", "concern_text", TEXT).record_id
    vault.client("app").erase_subject("member-2")
    for _ in range(3):
        vault.client("app").get_record(kept, "matching")
    _checkpoint(vault)  # the witness now holds the trail with these reads and the erasure
    vault.restore(backup, acknowledge=False)
    # the ledger (kept) replayed the erasure; the trail is behind its witness: nothing released
    _withheld(vault, kept)
    assert vault.running.service.integrity.causes().keys() == {"audit"}
    state = _witness_state(vault)
    assert state["rc"] == 1 and state["audit"] == "behind" and state["ledger"] == "consistent"
    verify = vault.vaultctl("--json", "audit", "verify")
    assert verify.returncode == 1 and json.loads(verify.stdout)["witness"] == "behind"
    # the documented procedure: stop, acknowledge, start
    vault.stop()
    ack = vault.vaultctl("--json", "witness", "acknowledge-restore", "--reason", "disk replaced")
    assert ack.returncode == 0, ack.stderr
    told = json.loads(ack.stdout)
    assert told["acknowledged"] and told["witnessed_size"] > told["restored_size"]
    vault.start()
    assert _health(vault) == "SERVING"
    assert vault.client("app").get_record(kept, "matching").fields == TEXT
    with pytest.raises(NotFound):
        vault.client("app").get_record(erased, "matching")
    reasons = [
        r.reason
        for r in vault.running.service.store.audit_rows()
        if r.action == "audit.restore_acknowledged"
    ]
    assert len(reasons) == 1 and "entries lost" in reasons[0] and "disk replaced" in reasons[0]
    _checkpoint(vault)
    verify = vault.vaultctl("--json", "audit", "verify")
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["witness"] == "consistent"


def test_data_directory_and_ledger_restored_together_are_repaired_from_the_witness(
    vault: Vault,
) -> None:
    data_and_ledger_restored_together_stay_erased(vault)


def data_and_ledger_restored_together_stay_erased(vault: Vault) -> None:
    """A subject erased after a backup; the data directory and the local ledger both restored
    from before the erasure: the ledger is repaired from the witness's copy before the replay,
    so the subject stays erased (also run with the witness in S3)."""
    ledger = vault.home / "var" / "ledger" / "erasures.jsonl"
    erased = vault.client("app").put_record("member-2", "concern_text", TEXT).record_id
    backup = vault.backup()
    old_ledger = ledger.read_bytes() if ledger.exists() else b""
    vault.client("app").erase_subject("member-2")
    assert ledger.read_bytes() != old_ledger
    vault.stop()
    ledger.write_bytes(old_ledger)  # the ledger restored with the data directory
    vault.restore(backup)
    with pytest.raises(NotFound):  # repaired from the witness, then replayed: still erased
        vault.client("app").get_record(erased, "matching")
    assert _witness_state(vault)["ledger"] == "consistent"
    assert ledger.read_bytes().startswith(old_ledger) and len(ledger.read_bytes()) > len(old_ledger)


def test_one_ledger_line_removed_is_restored_from_the_witness(vault: Vault) -> None:
    ledger = vault.home / "var" / "ledger" / "erasures.jsonl"
    first = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    second = vault.client("app").put_record("member-2", "concern_text", TEXT).record_id
    backup = vault.backup()
    vault.client("app").erase_subject("member-1")
    vault.client("app").erase_subject("member-2")
    vault.stop()
    original = ledger.read_bytes()
    lines = original.split(b"\n")
    victim = next(i for i, line in enumerate(lines) if line and b'"subject"' in line)
    ledger.write_bytes(b"\n".join(lines[:victim] + lines[victim + 1 :]))
    vault.restore(backup)
    for rid in (first, second):
        with pytest.raises(NotFound):
            vault.client("app").get_record(rid, "matching")
    assert ledger.read_bytes().startswith(original)  # the line is back (then the replay's lines)


def test_live_checkpoint_file_kept_with_a_restored_database_withholds(vault: Vault) -> None:
    rid = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    backup = vault.backup()
    for _ in range(5):
        vault.client("app").get_record(rid, "matching")
    _checkpoint(vault)
    vault.restore(backup, acknowledge=False)
    _withheld(vault, rid)
    verify = vault.vaultctl("audit", "verify")
    assert verify.returncode == 1 and "truncated" in verify.stdout


def test_witness_unreachable_at_start_withholds_until_a_check_reaches_it(vault: Vault) -> None:
    rid = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    _checkpoint(vault)
    vault.stop()
    witness = vault.home / "var" / "witness"
    aside = witness.with_name("witness-away")
    witness.rename(aside)
    witness.write_text("not a directory")  # the witness's storage is gone
    vault.start()
    _withheld(vault, rid)
    assert vault.running.service.integrity.causes().keys() == {"witness"}
    witness.unlink()
    aside.rename(witness)
    assembly = vault.running.assembly
    assert assembly.witnessing is not None
    assembly.witnessing.check(lambda: None)  # the witness_check job's run
    assert _health(vault) == "SERVING"
    assert vault.client("app").get_record(rid, "matching").fields == TEXT


def test_witness_unreachable_while_serving_does_not_stop_serving(vault: Vault) -> None:
    rid = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    vault.client("app").put_record("member-2", "concern_text", TEXT)
    witness = vault.home / "var" / "witness"
    aside = witness.with_name("witness-away")
    witness.rename(aside)
    witness.write_text("not a directory")
    try:
        with pytest.raises(Unavailable):
            _checkpoint(vault)  # signed and kept locally; the witness is retried
        vault.client("app").erase_subject("member-2")  # a destruction: ledgered, carried out
        assert vault.client("app").get_record(rid, "matching").fields == TEXT
        assert _health(vault) == "SERVING"
    finally:
        witness.unlink()
        aside.rename(witness)
    _checkpoint(vault)  # back: the consistency proof covers what it missed
    assembly = vault.running.assembly
    assert assembly.witnessing is not None
    assembly.witnessing.check(lambda: None)  # the witness_check job: the ledger catches up
    state = _witness_state(vault)
    assert (state["rc"], state["audit"], state["ledger"]) == (0, "consistent", "consistent")


def test_an_entry_edited_before_integration_is_never_signed_and_halts(vault: Vault) -> None:
    rid = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    _checkpoint(vault)
    vault.client("app").get_record(rid, "matching")
    _edit_newest_pending(vault)
    from vault_service.lifecycle.audit_log import ChainBroken

    with pytest.raises(ChainBroken):
        _checkpoint(vault)
    _withheld(vault, rid)


def _edit_newest_pending(vault: Vault) -> None:
    """An attacker with write access to the database edits the newest entry, still pending."""
    with RawDb(vault.home) as db:
        db.execute(
            "UPDATE audit_pending SET reason = 'nothing happened'"
            " WHERE id = (SELECT MAX(id) FROM audit_pending)"
        )
