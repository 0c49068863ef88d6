"""Deletion certificates carry the ledger proof (issue 18, part 8): the destruction ledger's line
that records the destruction, its inclusion proof, and the witnessed ledger checkpoint it is
proved against, all covered by the certificate's signature; ``vaultctl verify-certificate``
checks them offline (the certificate's signature, the checkpoint's, the witness's cosignature
with ``--witness-key``, the line's inclusion). A byte changed in the line or the proof fails,
even when the certificate is signed again; a certificate of the old format still verifies,
reported as "no ledger proof"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS, write_config
from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, Vault
from tests.support.serve import vaultctl
from vault_service.app import build_service
from vault_service.audit.witness import DirectoryWitness
from vault_service.clock import FixedClock
from vault_service.config import load_config
from vault_service.crypto.signing import SigningKey
from vault_service.lifecycle import rotation
from vault_service.lifecycle.ledger import Destruction, Kind, State
from vault_service.lifecycle.ledger_proof import (
    MAX_LINE_BYTES,
    PROOF_FORMAT,
    check_ledger_proof,
    ledger_origin,
)
from vault_service.lifecycle.verification import check_certificate, sign_certificate
from vault_service.policy import Principal
from vault_service.service import CallContext
from vault_service.tlog import merkle, note

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text

TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
WINDOW = 35 * DAY  # [lifecycle] backup_window_days default
APP = CallContext(Principal("app", "application"), "t")
WITNESS = "vault-service-witness"


def _verify(home: Path, cert: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    """``vaultctl --json verify-certificate FILE ARGS``: (exit code, its JSON)."""
    path = home / "certificate.json"
    path.write_text(json.dumps(cert, indent=2, sort_keys=True))
    result = vaultctl(home, "--json", "verify-certificate", str(path), *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def _witness_key(home: Path) -> str:
    return DirectoryWitness(home / "var" / "witness").public_key().hex()


def _certified_records(vault: Vault, n: int) -> dict[str, dict[str, Any]]:
    """``n`` records deleted, past the backup window: their certificates by record id."""
    app = vault.client("app")
    rids = [app.put_record("member-1", "concern_text", TEXT).record_id for _ in range(n)]
    for rid in rids:
        app.delete_record(rid)
    vault.clock.advance(WINDOW + 1)
    rows = {r["record_id"]: r for r in vault.client("operator").verify_record_deletion()}
    assert all(rows[rid]["result"] == "VERIFIED" for rid in rids)
    return {rid: json.loads(str(rows[rid]["certificate_json"])) for rid in rids}


def _flip(text: str, at: int) -> str:
    """``text`` with the character at ``at`` replaced (a hex digit by another)."""
    new = "0" if text[at] != "0" else "1"
    return text[:at] + new + text[at + 1 :]


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_record_certificate_carries_its_witnessed_ledger_proof(vault: Vault) -> None:
    certs = _certified_records(vault, 3)
    rid = list(certs)[1]
    cert = certs[rid]
    proof = cert["ledger_proof"]
    lines = vault.service.ledger.lines()
    index = proof["leaf_index"]
    assert proof["format"] == PROOF_FORMAT and proof["witnessed"] is True
    assert proof["line"].encode() == lines[index] and rid in proof["line"]
    public = vault.service.signing_key.public_key()
    checkpoint = note.open_checkpoint(proof["checkpoint"], ledger_origin(public), public)
    assert checkpoint.size == len(lines) == 3
    assert len(proof["inclusion_proof"]) == 2
    leaf = merkle.leaf_hash(lines[index])
    hashes = [bytes.fromhex(h) for h in proof["inclusion_proof"]]
    assert merkle.verify_inclusion(leaf, index, 3, hashes, checkpoint.root)
    # the note is the one kept beside the ledger, cosigned by the witness
    kept = vault.service.ledger.path.with_name(vault.service.ledger.path.name + ".checkpoint")
    assert proof["checkpoint"] == kept.read_text()
    assert check_certificate(cert) == (True, "valid")
    code, out = _verify(vault.home, cert)
    assert (code, out["valid"]) == (0, True)
    assert out["ledger_proof"] == f"ledger line {index} included in the ledger checkpoint of size 3"
    code, out = _verify(vault.home, cert, "--witness-key", _witness_key(vault.home))
    assert (code, out["ledger_proof"]) == (
        0,
        f"ledger line {index} included in the ledger checkpoint of size 3, cosigned by {WITNESS}",
    )
    code, out = _verify(vault.home, cert, "--witness-key", "22" * 32)
    assert (code, out["reason"]) == (
        1,
        f"ledger proof: the ledger checkpoint is not cosigned by the witness {WITNESS}",
    )
    code, out = _verify(vault.home, cert, "--public-key", public.hex())
    assert code == 0


def test_one_byte_changed_in_the_line_or_the_proof_fails(vault: Vault) -> None:
    certs = _certified_records(vault, 3)
    first, second, _ = certs
    cert = certs[first]
    signer: SigningKey = vault.service.signing_key
    proof = cert["ledger_proof"]
    at = proof["line"].index('"at": ') + 7  # a digit of the destruction's time
    edited_line = {**cert, "ledger_proof": {**proof, "line": _flip(proof["line"], at)}}
    hashes = list(proof["inclusion_proof"])
    hashes[0] = _flip(hashes[0], 5)
    edited_proof = {**cert, "ledger_proof": {**proof, "inclusion_proof": hashes}}
    moved = {**cert, "ledger_proof": {**proof, "leaf_index": proof["leaf_index"] + 1}}
    for forged in (edited_line, edited_proof, moved):
        code, out = _verify(vault.home, forged)
        assert (code, out["reason"]) == (1, "invalid signature")  # the signature covers it
    # signed again (by whoever holds the vault's key): the proof itself still fails
    expected = {
        "line": "ledger proof: the ledger line's signature does not verify",
        "proof": "ledger proof: ledger line 0 is not included in the ledger checkpoint of size 3",
        "index": "ledger proof: ledger line 1 is not included in the ledger checkpoint of size 3",
    }
    for what, forged in zip(expected, (edited_line, edited_proof, moved), strict=True):
        code, out = _verify(vault.home, sign_certificate(forged, signer))
        assert (code, out["reason"]) == (1, expected[what]), what
    # another line of the ledger (validly signed, included) does not certify this record
    other = certs[second]["ledger_proof"]
    swapped = sign_certificate({**cert, "ledger_proof": other}, signer)
    assert check_ledger_proof(swapped, signer.public_key()) == (
        False,
        "the ledger line does not record the certified destruction",
    )
    # a checkpoint under the audit trail's origin (the same key signs both logs) is refused
    audit_note = vault.running.assembly.checkpoints.latest("tree")
    if audit_note is not None:
        confused = sign_certificate(
            {**cert, "ledger_proof": {**proof, "checkpoint": audit_note.note}}, signer
        )
        assert check_ledger_proof(confused, signer.public_key()) == (
            False,
            "the ledger checkpoint's signature does not verify",
        )


def test_a_certificate_of_the_old_format_still_verifies(vault: Vault) -> None:
    certs = _certified_records(vault, 1)
    (cert,) = certs.values()
    old = sign_certificate(
        {k: v for k, v in cert.items() if k != "ledger_proof"}, vault.service.signing_key
    )
    code, out = _verify(vault.home, old)
    assert (code, out["valid"], out["reason"], out["ledger_proof"]) == (
        0,
        True,
        "valid",
        "no ledger proof",
    )
    text = vaultctl(vault.home, "verify-certificate", str(vault.home / "certificate.json"))
    assert text.stdout == "certificate VALID: valid\n  ledger proof: no ledger proof\n"


def test_a_missing_checkpoint_copy_is_replaced_by_a_fresh_witnessed_one(vault: Vault) -> None:
    """The note kept beside the ledger is gone (or stale): the witnessing module cosigns a
    fresh one for the certificate."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    app.delete_record(rid)
    kept = vault.service.ledger.path.with_name(vault.service.ledger.path.name + ".checkpoint")
    kept.unlink()
    vault.clock.advance(WINDOW + 1)
    (row,) = vault.client("operator").verify_record_deletion()
    cert = json.loads(str(row["certificate_json"]))
    assert cert["ledger_proof"]["witnessed"] is True
    assert cert["ledger_proof"]["checkpoint"] == kept.read_text()
    code, out = _verify(vault.home, cert, "--witness-key", _witness_key(vault.home))
    assert code == 0, out


def _erasure_certificate(home: Path) -> dict[str, Any]:
    """A subject erasure VERIFIED in-process (as tests/lifecycle/test_erasure_ledger.py does)."""
    clock = FixedClock()
    a = build_service(load_config(home / "vault.toml", {}), {}, clock)
    svc = a.service
    try:
        svc.put_record(APP, "member-2", "concern_text", {"text": "t"})
        svc.put_record(APP, "member-1", "concern_text", {"text": "t"})
        svc.erase_subject(APP, "member-1")
        while svc.purge_erased():
            pass
        rotation.rotate(svc.store, svc.provider, clock.now())
        rotation.rewrap_keys(svc.store, svc.provider)
        rotation.retire(svc.store, svc.provider, "1", clock.now())
        rotation.mark_for_destruction(svc.store, svc.provider, "1", clock.now())
        rotation.destroy(svc.store, svc.provider, "1", clock.now())
        clock.advance(svc.cache_max_age + 1)
        (check,) = svc.verify_deletions()
        assert check.status == "VERIFIED" and check.certificate is not None
        return check.certificate
    finally:
        a.store.close()


def test_a_subject_erasure_certificate_carries_its_ledger_proof(tmp_path: Path) -> None:
    write_config(tmp_path)
    cert = _erasure_certificate(tmp_path)
    assert cert["ledger_proof"]["witnessed"] is True
    assert '"kind": "subject"' in cert["ledger_proof"]["line"]
    code, out = _verify(tmp_path, cert, "--witness-key", _witness_key(tmp_path))
    assert (code, out["valid"]) == (0, True)
    assert out["ledger_proof"].endswith(f", cosigned by {WITNESS}")


def test_without_a_witness_the_proof_is_against_the_vaults_own_checkpoint(tmp_path: Path) -> None:
    write_config(tmp_path, witness__directory='""')
    cert = _erasure_certificate(tmp_path)
    assert cert["ledger_proof"]["witnessed"] is False
    code, out = _verify(tmp_path, cert)
    assert (code, out["valid"]) == (0, True)
    code, out = _verify(tmp_path, cert, "--witness-key", "33" * 32)
    assert (code, out["reason"]) == (
        1,
        f"ledger proof: the ledger checkpoint is not cosigned by the witness {WITNESS}",
    )


def test_a_batch_line_too_long_to_embed_gives_a_certificate_without_the_proof(vault: Vault) -> None:
    """Records are noted one per line; a line of many entries (longer than MAX_LINE_BYTES) is
    not embedded: the certificate is issued without a proof and verifies as one of the old
    format does."""
    ref = vault.service.subject_ref("member-1")
    at = vault.clock.now()
    batch = [
        Destruction(
            Kind.RECORD, ref, State.DONE, at, f"01a00000-0000-7000-8000-{i:012d}", cause="delete"
        )
        for i in range(20)
    ]
    vault.service.shredder.note(batch)
    assert len(vault.service.ledger.lines()[-1]) > MAX_LINE_BYTES
    vault.clock.advance(WINDOW + 1)
    rows = vault.client("operator").verify_record_deletion()
    assert len(rows) == 20 and all(r["result"] == "VERIFIED" for r in rows)
    cert = json.loads(str(rows[0]["certificate_json"]))
    assert "ledger_proof" not in cert
    code, out = _verify(vault.home, cert)
    assert (code, out["ledger_proof"]) == (0, "no ledger proof")
