"""The witness as a separate process: ``vaultctl witness serve`` (c2sp.org/tlog-witness and the
vault's extensions, audit/witness_http.py) and the vault's client :class:`HttpWitness`, against a
real subprocess on a free loopback port.

Through HttpWitness the witness behaves as DirectoryWitness does (tests/audit/test_witness.py):
a consistent extension is cosigned with the witness's key (verified against the key given to the
client, never the server's word); a rollback, a fork, a bad proof and a foreign signer are
refused, each with tlog-witness's status; a conflict names the held size and the Publisher
retries from it; the ledger's entries are kept only when they are the checkpoint's leaves; a
reset needs the log's signature. Raw requests check the statuses of malformed, oversize and
unknown-origin requests; a killed or silent witness is WitnessUnavailable; and a vault restored
from a backup together with its ledger is repaired from the witness process.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.regressions.conftest import Vault, shipped_policy_text
from tests.support.witness_process import WitnessProcess, vaultctl_witness
from vault_service.app import open_witness
from vault_service.audit.publish import LocalTree, Publisher, sign_checkpoint
from vault_service.audit.witness import (
    LogKey,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
    reset_statement,
)
from vault_service.audit.witness_client import HttpWitness
from vault_service.clock import FixedClock
from vault_service.config import load_config
from vault_service.crypto.signing import SigningKey
from vault_service.errors import ConfigError, NotFound
from vault_service.lifecycle.ledger_sync import ledger_tree
from vault_service.tlog import note

ORIGIN = "example.test/audit"
NAME = "witness.example"


def _leaves(n: int, tag: bytes = b"") -> list[bytes]:
    return [tag + b"entry %d" % i for i in range(n)]


def _signed(signer: SigningKey, entries: list[bytes], origin: str = ORIGIN) -> tuple[str, LocalTree]:
    tree = ledger_tree(entries)
    return sign_checkpoint(origin, tree.size, tree.root(tree.size), signer), tree


def _raw(
    served: WitnessProcess,
    method: str,
    path: str,
    body: bytes | list[bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One request as any HTTP client would send it: (status, content type, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type", ""), reply.read()
    finally:
        conn.close()


@pytest.fixture
def signer() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def log(signer: SigningKey) -> LogKey:
    return LogKey(ORIGIN, signer.public_key())


@pytest.fixture
def witness_key(tmp_path: Path) -> bytes:
    """The witness's public key as its operator reads it (``vaultctl witness key``), before it
    serves: the vault's config holds this, never what the server says."""
    got = vaultctl_witness("key", "--directory", str(tmp_path / "witness"), "--name", NAME)
    assert got.returncode == 0, got.stderr
    return bytes.fromhex(json.loads(got.stdout)["public_key"])


@pytest.fixture
def served(tmp_path: Path, signer: SigningKey, witness_key: bytes) -> Iterator[WitnessProcess]:
    w = WitnessProcess(tmp_path / "witness", {ORIGIN: signer.public_key()}, name=NAME).start()
    assert w.public_key == witness_key
    yield w
    if w.proc is not None:
        assert w.stop() == 0  # SIGTERM: a clean stop


@pytest.fixture
def witness(served: WitnessProcess, witness_key: bytes) -> HttpWitness:
    return HttpWitness(served.url, NAME, witness_key, timeout=5)


def test_consistent_extensions_are_accepted_and_cosigned_with_the_witness_key(
    served: WitnessProcess, witness: HttpWitness, signer: SigningKey, log: LogKey, witness_key: bytes
) -> None:
    assert witness.latest(log) is None
    first, _ = _signed(signer, _leaves(3))
    cosigned = witness.add_checkpoint(log, 0, [], first)
    assert note.verify_note(cosigned, ORIGIN, signer.public_key())
    assert note.verify_cosignature(cosigned, NAME, witness_key) > 0
    second, tree = _signed(signer, _leaves(7))
    cosigned = witness.add_checkpoint(log, 3, tree.consistency(3, 7), second)
    held = witness.latest(log)
    assert held is not None and held.checkpoint.size == 7 and held.note == cosigned
    # the same checkpoint again: the held cosignature, nothing added
    assert witness.add_checkpoint(log, 7, [], second) == cosigned
    # tlog-witness's own shapes: the 200 is the cosignature line(s) alone, and the monitoring
    # endpoint serves the held note under the origin's hash
    third, tree = _signed(signer, _leaves(9))
    proof = "".join(base64.b64encode(h).decode() + "\n" for h in tree.consistency(7, 9))
    status, ctype, body = _raw(served, "POST", "/add-checkpoint", f"old 7\n{proof}\n{third}".encode())
    assert (status, ctype) == (200, "text/x.tlog.signature")
    lines = body.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"\u2014 {NAME} ")
    assert note.verify_cosignature(third + body.decode(), NAME, witness_key) > 0
    status, _, body = _raw(served, "GET", f"/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint")
    assert status == 200 and body.decode() == third + lines[0] + "\n"


def test_rollback_fork_bad_proof_and_foreign_signer_are_refused_with_the_spec_statuses(
    served: WitnessProcess, witness: HttpWitness, signer: SigningKey, log: LogKey
) -> None:
    big, _ = _signed(signer, _leaves(8))
    witness.add_checkpoint(log, 0, [], big)
    small, _ = _signed(signer, _leaves(4))
    with pytest.raises(WitnessRefused, match="rolled back"):
        witness.add_checkpoint(log, 8, [], small)
    fork, _ = _signed(signer, _leaves(8, b"other "))
    with pytest.raises(WitnessRefused, match="fork"):
        witness.add_checkpoint(log, 8, [], fork)
    other, tree = _signed(signer, _leaves(12, b"other "))
    with pytest.raises(WitnessRefused, match="consistent"):
        witness.add_checkpoint(log, 8, tree.consistency(8, 12), other)
    stranger, _ = _signed(SigningKey.generate(), _leaves(9))
    with pytest.raises(WitnessRefused, match="signed"):
        witness.add_checkpoint(log, 8, [], stranger)
    with pytest.raises(WitnessConflict) as conflict:
        witness.add_checkpoint(log, 3, [], big)
    assert conflict.value.held_size == 8
    # the statuses on the wire (tlog-witness): 400 old > size, 422 fork and bad proof, 403 signer
    proof = "".join(base64.b64encode(h).decode() + "\n" for h in tree.consistency(8, 12))
    for body, status in [
        (f"old 8\n\n{small}", 400),
        (f"old 8\n\n{fork}", 422),
        (f"old 8\n{proof}\n{other}", 422),
        (f"old 8\n\n{stranger}", 403),
    ]:
        assert _raw(served, "POST", "/add-checkpoint", body.encode())[0] == status
    held = witness.latest(log)
    assert held is not None and held.checkpoint.size == 8  # nothing refused was taken


def test_a_conflict_names_the_held_size_and_the_publisher_retries_from_it(
    served: WitnessProcess, witness: HttpWitness, signer: SigningKey, log: LogKey, witness_key: bytes
) -> None:
    stale, other = Publisher(witness, log), Publisher(witness, log)
    assert stale.latest() is None  # this process believes the witness holds nothing
    first, tree3 = _signed(signer, _leaves(3))
    other.publish(first, dataclasses.replace(tree3, entries=None))  # another process moves it
    second, tree7 = _signed(signer, _leaves(7))
    status, ctype, body = _raw(served, "POST", "/add-checkpoint", f"old 0\n\n{second}".encode())
    assert (status, ctype, body) == (409, "text/x.tlog.size", b"3\n")
    cosigned = stale.publish(second, dataclasses.replace(tree7, entries=None))  # 409, then from 3
    assert note.verify_cosignature(cosigned, NAME, witness_key) > 0
    held = witness.latest(log)
    assert held is not None and held.checkpoint.size == 7


def test_entries_are_kept_only_when_they_are_the_leaves_and_never_reset(
    witness: HttpWitness, signer: SigningKey, log: LogKey
) -> None:
    entries = _leaves(2500)  # more than one page of GET /vault/entries
    signed, _ = _signed(signer, entries)
    with pytest.raises(WitnessRefused, match="leaves"):
        witness.add_checkpoint(log, 0, [], signed, entries=_leaves(2500, b"x"))
    with pytest.raises(WitnessRefused, match="fill"):
        witness.add_checkpoint(log, 0, [], signed, entries=entries[:-1])
    witness.add_checkpoint(log, 0, [], signed, entries=entries)
    more = _leaves(2501)
    signed_more, tree = _signed(signer, more)
    witness.add_checkpoint(log, 2500, tree.consistency(2500, 2501), signed_more, entries=more[2500:])
    assert witness.entries(log, 0) == more
    assert witness.entries(log, 2499) == more[2499:]
    assert witness.entries(log, 5000) == []
    held = witness.latest(log)
    assert held is not None
    statement = note.sign_note(reset_statement(held, 0, "x"), ORIGIN, signer)
    with pytest.raises(WitnessRefused, match="repaired, never reset"):
        witness.reset(log, statement)


def test_reset_needs_the_logs_signature_and_names_the_held_checkpoint(
    served: WitnessProcess, witness: HttpWitness, signer: SigningKey, log: LogKey
) -> None:
    signed, _ = _signed(signer, _leaves(4))
    witness.add_checkpoint(log, 0, [], signed)
    held = witness.latest(log)
    assert held is not None
    forged = note.sign_note(reset_statement(held, 2, "restore"), ORIGIN, SigningKey.generate())
    with pytest.raises(WitnessRefused, match="signed"):
        witness.reset(log, forged)
    stale = reset_statement(held, 2, "restore").replace(f"held {held.checkpoint.size} ", "held 3 ")
    with pytest.raises(WitnessRefused, match="does not name"):
        witness.reset(log, note.sign_note(stale, ORIGIN, signer))
    witness.reset(log, note.sign_note(reset_statement(held, 2, "restore"), ORIGIN, signer))
    assert witness.latest(log) is None
    history = (served.directory / "logs").rglob("history.jsonl")
    assert any("witness-reset" in p.read_text() for p in history)
    assert witness.add_checkpoint(log, 0, [], _signed(signer, _leaves(2))[0])  # starts again


def test_malformed_oversize_and_unknown_requests_get_their_status(
    served: WitnessProcess, signer: SigningKey
) -> None:
    signed, tree = _signed(signer, _leaves(5))
    h = base64.b64encode(tree.root(5)).decode()
    empty_root_lie = note.sign_note(f"{ORIGIN}\n0\n{h}\n", ORIGIN, signer)
    foreign, _ = _signed(signer, _leaves(5), origin="example.test/unknown")
    cases: list[tuple[bytes, int]] = [
        (f"\n{signed}".encode(), 400),  # no old line
        (f"old 03\n\n{signed}".encode(), 400),  # a leading zero
        (f"old 1\nnot base64!\n\n{signed}".encode(), 400),
        (f"old 1\n{base64.b64encode(b'short').decode()}\n\n{signed}".encode(), 400),
        (f"old 1\n{(h + chr(10)) * 64}\n{signed}".encode(), 400),  # 64 proof lines: above 63
        (b"old 0\n", 400),  # no empty line, no checkpoint
        (b"old 0\n\n\xff\xfe", 400),  # not UTF-8
        (f"old 0\n\n{ORIGIN}\n5\n{h}\n".encode(), 400),  # a checkpoint without signatures
        (f"old 0\n\n{foreign}".encode(), 404),  # an origin this witness does not witness
        (f"old 0\n\n{empty_root_lie}".encode(), 422),  # size 0 without the empty root
        (f"old 0\n{h}\n\n{signed}".encode(), 422),  # a proof from size 0
    ]
    for body, status in cases:
        got = _raw(served, "POST", "/add-checkpoint", body)
        assert got[0] == status, (body[:40], got)
        assert got[1].startswith("text/plain") and got[2].endswith(b"\n")
    # bounded bodies: refused on the Content-Length, before reading
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.putrequest("POST", "/add-checkpoint")
    conn.putheader("Content-Length", str(64 * 1024 + 1))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    chunked = _raw(served, "POST", "/add-checkpoint", [b"old 0\n"], {"Transfer-Encoding": "chunked"})
    assert chunked[0] == 411
    # the extensions and the monitoring endpoint: unknown log 404, bad query 400, wrong method 405
    q = "origin=example.test%2Funknown"
    assert _raw(served, "GET", f"/vault/latest?{q}")[0] == 404
    assert _raw(served, "GET", f"/vault/entries?{q}&start=0")[0] == 404
    assert _raw(served, "POST", f"/vault/reset?{q}", b"x")[0] == 404
    assert _raw(served, "GET", f"/{'0' * 64}/checkpoint")[0] == 404
    origin_q = "origin=" + ORIGIN.replace("/", "%2F")
    assert _raw(served, "GET", f"/vault/latest?{origin_q}")[0] == 204  # known, nothing held yet
    assert _raw(served, "GET", f"/vault/latest?{origin_q}&{origin_q}")[0] == 400
    assert _raw(served, "GET", f"/vault/entries?{origin_q}&start=01")[0] == 400
    assert _raw(served, "GET", "/add-checkpoint")[0] == 405
    assert _raw(served, "POST", "/vault/latest", b"")[0] == 405
    assert _raw(served, "GET", "/nowhere")[0] == 404
    assert _raw(served, "POST", "/add-checkpoint", f"old 0\n\n{signed}".encode())[0] == 200
    # a request's body never reaches the witness's log: its method, path and status do
    assert served.stop() == 0
    text = served.log_text()
    assert '"path":"/add-checkpoint","status":200' in text
    assert h not in text and signed.split("\u2014 ")[1].split()[1] not in text


def test_the_entries_extension_is_bounded_by_max_body_bytes(
    tmp_path: Path, signer: SigningKey, log: LogKey
) -> None:
    w = WitnessProcess(
        tmp_path / "witness", {ORIGIN: signer.public_key()}, "--max-body-bytes", "65536", name=NAME
    ).start()
    try:
        client = HttpWitness(w.url, NAME, w.public_key)
        entries = [b"%05d" % i + b"x" * 400 for i in range(200)]  # about 110 KB as base64
        signed, _ = _signed(signer, entries)
        with pytest.raises(WitnessUnavailable):  # 413 (or the connection closed on the body)
            client.add_checkpoint(log, 0, [], signed, entries=entries)
        assert client.add_checkpoint(log, 0, [], _signed(signer, entries[:50])[0], entries[:50])
    finally:
        assert w.stop() == 0


def test_a_cosignature_by_another_key_is_not_taken(
    served: WitnessProcess, signer: SigningKey, log: LogKey
) -> None:
    impostor = HttpWitness(served.url, NAME, SigningKey.generate().public_key())
    signed, _ = _signed(signer, _leaves(3))
    with pytest.raises(WitnessUnavailable, match="configured key"):
        impostor.add_checkpoint(log, 0, [], signed)
    with pytest.raises(WitnessUnavailable, match="does not verify"):
        impostor.latest(log)  # the held note (cosigned by the real key) is not taken either


def test_a_killed_or_silent_witness_is_unavailable_and_comes_back(
    served: WitnessProcess, witness: HttpWitness, signer: SigningKey, log: LogKey
) -> None:
    signed, _ = _signed(signer, _leaves(3))
    witness.add_checkpoint(log, 0, [], signed)
    port = served.port
    served.kill()
    with pytest.raises(WitnessUnavailable):
        witness.latest(log)
    with pytest.raises(WitnessUnavailable):
        witness.add_checkpoint(log, 3, [], signed)
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        mute = HttpWitness(f"http://127.0.0.1:{silent.getsockname()[1]}", NAME, served.public_key, 0.5)
        with pytest.raises(WitnessUnavailable):
            mute.latest(log)
    served.start(port)  # back where it was, with what it held
    held = witness.latest(log)
    assert held is not None and held.checkpoint.size == 3


def test_keep_alive_and_a_sigterm_that_lets_the_call_in_flight_finish(
    served: WitnessProcess, signer: SigningKey
) -> None:
    first, _ = _signed(signer, _leaves(2))
    second, tree = _signed(signer, _leaves(3))
    proof = "".join(base64.b64encode(h).decode() + "\n" for h in tree.consistency(2, 3))
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    conn.request("POST", "/add-checkpoint", body=f"old 0\n\n{first}".encode())
    assert conn.getresponse().read() and conn.sock is not None  # one connection, kept open
    body = f"old 2\n{proof}\n{second}".encode()
    conn.putrequest("POST", "/add-checkpoint")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:10])
    time.sleep(0.3)
    served.terminate()  # SIGTERM while the request's body is still coming
    time.sleep(0.5)
    conn.send(body[10:])
    assert conn.getresponse().status == 200
    conn.close()
    assert served.wait() == 0
    with pytest.raises(OSError):  # stopped: nothing listens any more
        socket.create_connection(("127.0.0.1", served.port), timeout=2).close()


def test_serve_refuses_a_non_loopback_address_and_a_bad_log_key(tmp_path: Path) -> None:
    key = SigningKey.generate().public_key()
    vkey = note.verifier_key(ORIGIN, key)
    args = ["serve", "--directory", str(tmp_path / "w"), "--log", f"{ORIGIN}={vkey}"]
    refused = vaultctl_witness(*args, "--listen", "0.0.0.0:0")
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    other = vaultctl_witness(*args[:-1], f"example.test/other={vkey}", "--listen", "127.0.0.1:0")
    assert other.returncode == 2 and "its origin" in other.stderr


def test_the_config_names_one_witness_and_its_key(tmp_path: Path) -> None:
    key = "ab" * 32
    write_config(tmp_path, witness__url='"http://127.0.0.1:8787"')  # and the default directory
    with pytest.raises(ConfigError, match="one witness, not two"):
        open_witness(load_config(tmp_path / "vault.toml", {}))
    write_config(tmp_path, witness__url='"http://127.0.0.1:8787"', witness__directory='""')
    with pytest.raises(ConfigError, match="public_key"):
        open_witness(load_config(tmp_path / "vault.toml", {}))
    env = {"VAULT_WITNESS_PUBLIC_KEY": key}
    got = open_witness(load_config(tmp_path / "vault.toml", env))
    assert isinstance(got, HttpWitness) and got.public_key() == bytes.fromhex(key)
    with pytest.raises(ConfigError, match="http://host:port"):
        open_witness(load_config(tmp_path / "vault.toml", {**env, "VAULT_WITNESS_URL": "file:///x"}))


TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}


def test_a_vault_restored_with_its_ledger_is_repaired_from_the_witness_process(
    tmp_path: Path,
) -> None:
    """tests/regressions/test_witnessed_logs.py's restore of the data directory and the ledger
    together, with the witness a separate process over HTTP."""
    home = tmp_path / "vault"
    home.mkdir()
    write_config(home, witness__directory='""')
    logs = vaultctl_witness_logs(home)
    w = WitnessProcess(tmp_path / "witness", logs, name=NAME).start()
    key = vaultctl_witness("key", "--directory", str(w.directory), "--name", NAME)
    public = json.loads(key.stdout)["public_key"]
    write_config(
        home,
        witness__directory='""',
        witness__url=f'"{w.url}"',
        witness__public_key=f'"{public}"',
        witness__name=f'"{NAME}"',
    )
    (home / "policy.toml").write_text(shipped_policy_text())
    vault = Vault(home, FixedClock())
    vault.start()
    try:
        ledger = home / "var" / "ledger" / "erasures.jsonl"
        erased = vault.client("app").put_record("member-2", "concern_text", TEXT).record_id
        backup = vault.backup()
        old_ledger = ledger.read_bytes() if ledger.exists() else b""
        vault.client("app").erase_subject("member-2")
        assert ledger.read_bytes() != old_ledger
        assert list((w.directory / "logs").rglob("entries.jsonl"))  # the witness keeps the lines
        witnessing = vault.running.assembly.witnessing
        assert witnessing is not None
        witnessing.checkpoint(vault.clock.now())  # the sequencer's run: the trail witnessed too
        vault.stop()
        ledger.write_bytes(old_ledger)  # the ledger restored with the data directory
        vault.restore(backup)  # the trail is behind its witness: acknowledged, reset over HTTP
        history = "".join(p.read_text() for p in (w.directory / "logs").rglob("history.jsonl"))
        assert "witness-reset" in history
        with pytest.raises(NotFound):  # repaired from the witness, then replayed: still erased
            vault.client("app").get_record(erased, "matching")
        assert ledger.read_bytes().startswith(old_ledger)
        assert len(ledger.read_bytes()) > len(old_ledger)
        witnessing = vault.running.assembly.witnessing
        assert witnessing is not None
        witnessing.checkpoint(vault.clock.now())
        status = vault.vaultctl("--json", "witness", "status")
        assert json.loads(status.stdout)["ledger"] == "consistent", status.stdout
        assert json.loads(status.stdout)["audit"] == "consistent", status.stdout
    finally:
        vault.close()
        assert w.stop() == 0


def vaultctl_witness_logs(home: Path) -> dict[str, bytes]:
    """``vaultctl witness logs`` of the vault at ``home``: origin -> the log's public key."""
    from tests.support.serve import vaultctl

    got = vaultctl(home, "--json", "witness", "logs")
    assert got.returncode == 0, got.stderr
    out: dict[str, bytes] = {}
    for item in json.loads(got.stdout)["logs"]:
        name, public = note.parse_verifier_key(item["verifier_key"])
        assert name == item["origin"]
        out[name] = public
    assert {item["log"] for item in json.loads(got.stdout)["logs"]} == {"audit", "ledger"}
    return out
