"""An independent decoder of the at-rest format, written from docs/format.md alone.

It decrypts the committed vectors (tests/vectors/format/, made once by
tools/make_format_vectors.py through the real service) with nothing but ``cryptography``'s
primitives, ``sqlite3``, ``json`` and the standard library: it imports nothing of
``vault_service`` (a test below checks this file's imports). Each helper names the section of
docs/format.md it implements. If one of these tests fails, the service and its specification
disagree: fix whichever is wrong, never the vectors.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import re
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
VECTORS = ROOT / "tests" / "vectors" / "format"
SPEC = ROOT / "docs" / "format.md"

U32 = struct.Struct(">I")


class FormatError(ValueError):
    """Bytes that do not have the shape the spec gives them (before any AEAD runs)."""


# --- §3 The keyring file -------------------------------------------------------------------------------

KEYRING_FORMAT = "vault-service-keyring/v1"


def open_sealed_keyring(doc: dict[str, Any], passphrase: bytes) -> dict[str, Any]:
    """§3, sealed: scrypt(passphrase, salt, n, r, p) -> 32-byte key; AES-256-GCM with the
    format string as associated data; the plaintext is the unsealed document."""
    sealed = doc["sealed"]
    if sealed["kdf"] != "scrypt":
        raise FormatError("unknown kdf")
    key = Scrypt(
        salt=base64.b64decode(sealed["salt"]),
        length=32,
        n=int(sealed["n"]),
        r=int(sealed["r"]),
        p=int(sealed["p"]),
    ).derive(passphrase)
    plaintext = AESGCM(key).decrypt(
        base64.b64decode(sealed["nonce"]),
        base64.b64decode(sealed["ciphertext"]),
        KEYRING_FORMAT.encode(),
    )
    inner: dict[str, Any] = json.loads(plaintext)
    return inner


def root_keys(doc: dict[str, Any]) -> dict[str, bytes]:
    """§3: version (a string) -> 32 bytes of root-key material; versions whose
    material is empty (destroyed) are left out."""
    if doc.get("format") != KEYRING_FORMAT or "versions" not in doc:
        raise FormatError("not an unsealed keyring")
    out = {}
    for entry in doc["versions"]:
        if entry.get("material"):
            material = base64.b64decode(entry["material"])
            if len(material) != 32:
                raise FormatError("root key material is not 32 bytes")
            out[entry["version"]] = material
    return out


# --- §4 Context encoding -------------------------------------------------------------------------------


def lp(data: bytes) -> bytes:
    return U32.pack(len(data)) + data


def context(domain: str, **items: str) -> bytes:
    """ "vsctx1" || lp(domain) || u32(n) || n x (lp(name) || lp(value)), names sorted bytewise."""
    out = [b"vsctx1", lp(domain.encode()), U32.pack(len(items))]
    for name in sorted(items, key=lambda n: n.encode()):
        out += [lp(name.encode()), lp(items[name].encode())]
    return b"".join(out)


def record_context(
    domain: str, ref: bytes, record_id: str, version: int, category: str, **extra: str
) -> bytes:
    return context(
        domain, subject=ref.hex(), record=record_id, version=str(version), category=category, **extra
    )


# --- §5 Key wrap ---------------------------------------------------------------------------------------

KEYWRAP_AAD = b"vault-service/keywrap/v1"


def unwrap(kek: bytes, wrapped: bytes, ctx: bytes) -> bytes:
    """61 bytes: 0x01 || nonce (12) || AES-256-GCM ciphertext of the key (32) || tag (16), with
    associated data "vault-service/keywrap/v1" || context."""
    if len(wrapped) != 61 or wrapped[0] != 0x01:
        raise FormatError("not a version-1 wrapped key")
    return AESGCM(kek).decrypt(wrapped[1:13], wrapped[13:], KEYWRAP_AAD + ctx)


def unwrap_local(
    roots: dict[str, bytes], root_version: str, wrapped: bytes, ctx_domain: str, **items: str
) -> bytes:
    """§6, local: the key wrap under the root version's material, with the context plus a
    ``root_version`` item."""
    return unwrap(roots[root_version], wrapped, context(ctx_domain, root_version=root_version, **items))


# --- §10 Payloads: chunked encryption ------------------------------------------------------------------

CHUNK = 16 * 1024
SEALED_CHUNK = CHUNK + 16
HEADER = 24 + 32
INFO_PREFIX = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00"


class CommitmentMismatch(ValueError):
    """Wrong key or context (or an altered salt or commitment): checked before any chunk."""


def derive_message_keys(input_key: bytes, salt: bytes, ctx: bytes) -> tuple[bytes, bytes, bytes]:
    okm = HKDFExpand(algorithm=hashes.SHA512(), length=76, info=INFO_PREFIX + salt + ctx).derive(
        input_key
    )
    return okm[:32], okm[32:44], okm[44:]


def chunks_of(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Full chunks of 16,400 bytes, then the final chunk of 16..16,399 bytes (always present)."""
    n_full, rest = divmod(len(body), SEALED_CHUNK)
    if rest < 16:
        raise FormatError("truncated: the final chunk is missing or shorter than a tag")
    for i in range(n_full):
        yield i, body[i * SEALED_CHUNK : (i + 1) * SEALED_CHUNK]
    yield n_full, body[n_full * SEALED_CHUNK :]


def decrypt_payload(input_key: bytes, ctx: bytes, message: bytes) -> bytes:
    """salt (24) || commitment (32) || chunks; chunk i under nonce = base_nonce XOR i, no AAD."""
    if len(message) < HEADER + 16:
        raise FormatError("shorter than a header and an empty final chunk")
    salt, commitment = message[:24], message[24:56]
    key, base_nonce, expected = derive_message_keys(input_key, salt, ctx)
    if not hmac.compare_digest(commitment, expected):
        raise CommitmentMismatch()
    aead = AESGCM(key)
    base = int.from_bytes(base_nonce, "big")
    return b"".join(
        aead.decrypt((base ^ i).to_bytes(12, "big"), chunk, None)
        for i, chunk in chunks_of(message[HEADER:])
    )


# --- §8 Keyed derivations ------------------------------------------------------------------------------


def keyed(index_key: bytes, label: bytes, *parts: bytes) -> hmac.HMAC:
    mac = hmac.new(index_key, label + b"\x00", hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac


def subject_ref(index_key: bytes, subject_id: str) -> bytes:
    return keyed(index_key, b"subject-ref/v1", subject_id.encode()).digest()


# --- the vectors ---------------------------------------------------------------------------------------


def load_db(data: bytes) -> sqlite3.Connection:
    """The database file, opened in memory (so the committed file is never written to)."""
    conn = sqlite3.connect(":memory:")
    conn.deserialize(data)
    return conn


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((VECTORS / "expected.json").read_text())
    return result


@pytest.fixture(scope="module")
def roots() -> dict[str, bytes]:
    return root_keys(json.loads((VECTORS / "keyring.json").read_text()))


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = load_db((VECTORS / "vault.db").read_bytes())
    yield conn
    conn.close()


class Vault:
    """The spec's steps, one call each, over one database and keyring."""

    def __init__(self, db: sqlite3.Connection, roots: dict[str, bytes]) -> None:
        self.db = db
        self.roots = roots

    def service_key(self, name: str) -> bytes:
        """§7: the row of service_keys, unwrapped by the root key of its version."""
        row = self.db.execute(
            "SELECT root_version, wrapped FROM service_keys WHERE name = ?", (name,)
        ).fetchone()
        assert row is not None, f"no service key {name}"
        return unwrap_local(self.roots, row[0], row[1], "service-key", name=name)

    def index_key(self) -> bytes:
        return self.service_key("subject-index")

    def subject_key(self, ref: bytes) -> bytes:
        """§13 step 4: under "dormant-subject-key" while separated_at is set (schema 17)."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(subject_keys)")}
        separated = "sk.separated_at" if "separated_at" in columns else "NULL"
        row = self.db.execute(
            f"SELECT sk.root_version, sk.wrapped, {separated} FROM subject_keys sk JOIN subjects s"
            " ON s.subject_ref = sk.subject_ref WHERE sk.subject_ref = ? AND s.state != 'erased'",
            (ref,),
        ).fetchone()
        assert row is not None, "no live subject key"
        domain = "subject-key" if row[2] is None else "dormant-subject-key"
        return unwrap_local(self.roots, row[0], row[1], domain, subject=ref.hex())

    def records(self, ref: bytes) -> list[tuple[str, str, int, str, str | None]]:
        """§9, live records: not consumed, and the key that wraps their data keys still exists."""
        return self.db.execute(
            "SELECT r.record_id, r.category, r.version, r.key_kind, r.blob_ref FROM records r"
            " JOIN subjects s ON s.subject_ref = r.subject_ref"
            " WHERE r.subject_ref = ? AND r.consumed_at IS NULL AND ("
            "  (r.key_kind = 'subject' AND s.state != 'erased'"
            "   AND EXISTS (SELECT 1 FROM subject_keys k WHERE k.subject_ref = r.subject_ref))"
            "  OR (r.key_kind = 'legal'"
            "   AND EXISTS (SELECT 1 FROM service_keys k WHERE k.name = 'legal:' || ?)))"
            " ORDER BY r.record_id",
            (ref, ref.hex()),
        ).fetchall()

    def record_wrapping_key(self, ref: bytes, key_kind: str) -> bytes:
        """§9, key_kind: 'subject' -> the subject key; 'legal' -> the service key legal:<ref hex>."""
        if key_kind == "subject":
            return self.subject_key(ref)
        if key_kind == "legal":
            return self.service_key("legal:" + ref.hex())
        raise FormatError(f"unknown key_kind {key_kind!r}")

    def data_key(self, ref: bytes, record_id: str, version: int, category: str, key_kind: str) -> bytes:
        (wrapped,) = self.db.execute(
            "SELECT wrapped FROM record_keys WHERE record_id = ? AND version = ?", (record_id, version)
        ).fetchone()
        kek = self.record_wrapping_key(ref, key_kind)
        return unwrap(kek, wrapped, record_context("data-key", ref, record_id, version, category))

    def fields(
        self, ref: bytes, record_id: str, version: int, category: str, data_key: bytes
    ) -> dict[str, bytes]:
        rows = self.db.execute(
            "SELECT field, ciphertext FROM record_payloads WHERE record_id = ? AND version = ?",
            (record_id, version),
        ).fetchall()
        return {
            name: decrypt_payload(
                data_key, record_context("payload", ref, record_id, version, category, field=name), ct
            )
            for name, ct in rows
        }


def blob_path(ref: str) -> Path:
    """§11: <blob_dir>/<first two characters of the ref>/<ref>."""
    return VECTORS / "blobs" / ref[:2] / ref


def decrypt_subject(vault: Vault, subject_id: str) -> dict[str, dict[str, Any]]:
    """Everything of one subject, from the keyring and the files alone."""
    ref = subject_ref(vault.index_key(), subject_id)
    out: dict[str, dict[str, Any]] = {}
    for record_id, category, version, key_kind, blob_ref in vault.records(ref):
        data_key = vault.data_key(ref, record_id, version, category, key_kind)
        item: dict[str, Any] = {
            "category": category,
            "version": version,
            "key_kind": key_kind,
            "fields": vault.fields(ref, record_id, version, category, data_key),
        }
        if blob_ref is not None:
            ctx = record_context("payload", ref, record_id, version, category, field="content")
            item["content"] = decrypt_payload(data_key, ctx, blob_path(blob_ref).read_bytes())
        out[record_id] = item
    return out


# --- decrypting the vectors ----------------------------------------------------------------------------


def test_a_backup_decrypts_with_the_keyring_alone(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    got = decrypt_subject(Vault(db, roots), expected["subject_id"])
    assert set(got) == {r["record_id"] for r in expected["records"]}
    for want in expected["records"]:
        record = got[want["record_id"]]
        assert record["category"] == want["category"]
        assert record["version"] == want["version"]
        assert record["key_kind"] == want["key_kind"]
        assert {k: v.hex() for k, v in record["fields"].items()} == want["fields"]
        if "content" in want:
            assert record["content"].hex() == want["content"]
            assert len(record["content"]) == want["content_length"]
            assert hashlib.sha256(record["content"]).hexdigest() == want["content_sha256"]
        else:
            assert "content" not in record


def test_after_an_erasure_only_the_records_kept_by_law_decrypt(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    """What an erasure leaves (§9, key_kind): the subject key row is gone and the subject is
    marked erased; the record under the legal key still decrypts."""
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    db.execute("DELETE FROM subject_keys WHERE subject_ref = ?", (ref,))
    db.execute("UPDATE subjects SET state = 'erased' WHERE subject_ref = ?", (ref,))
    got = decrypt_subject(vault, expected["subject_id"])
    (legal,) = [r for r in expected["records"] if r["key_kind"] == "legal"]
    assert list(got) == [legal["record_id"]]
    assert {k: v.hex() for k, v in got[legal["record_id"]]["fields"].items()} == legal["fields"]


def test_the_rows_are_where_the_spec_puts_them(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    assert len(ref) == 32
    # subjects are stored by reference only, never by id
    assert db.execute("SELECT state FROM subjects WHERE subject_ref = ?", (ref,)).fetchone() == (
        "active",
    )
    for table, column in [("subjects", "subject_ref"), ("records", "subject_ref")]:
        for (value,) in db.execute(f"SELECT {column} FROM {table}"):
            assert value == ref
    # the field names column: sorted, joined by U+001F
    for record_id, names in db.execute("SELECT record_id, field_names FROM records"):
        stored = {
            n
            for (n,) in db.execute("SELECT field FROM record_payloads WHERE record_id = ?", (record_id,))
        }
        assert names.split("\x1f") == sorted(stored)
    # only the current version of each record has a data key (the update destroyed version 1)
    assert db.execute(
        "SELECT COUNT(*) FROM record_keys rk JOIN records r ON r.record_id = rk.record_id"
        " WHERE rk.version != r.version"
    ).fetchone() == (0,)
    # content: the blob ref is <record id>.v<version>, in records and in the version's key row
    for record_id, version, blob_ref, length in db.execute(
        "SELECT record_id, version, blob_ref, content_length FROM records WHERE blob_ref IS NOT NULL"
    ):
        assert blob_ref == f"{record_id}.v{version}"
        assert db.execute(
            "SELECT blob_ref FROM record_keys WHERE record_id = ? AND version = ?", (record_id, version)
        ).fetchone() == (blob_ref,)
        size = blob_path(blob_ref).stat().st_size
        assert size == HEADER + length + (length // CHUNK + 1) * 16
        assert length // CHUNK + 1 == 3  # the vector spans three chunks
    # audit entries name the subject by the first 32 hex digits of its reference
    pseudonyms = {
        p for (p,) in db.execute("SELECT subject_pseudonym FROM audit_log WHERE subject_pseudonym != ''")
    }
    assert pseudonyms == {ref.hex()[:32]}


def test_every_service_key_unwraps_under_its_root_version(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    rows = dict(db.execute("SELECT name, root_version FROM service_keys").fetchall())
    assert rows == {"subject-index": "1", "audit-signing": "1", f"legal:{ref.hex()}": "2"}
    for name in rows:
        assert len(vault.service_key(name)) == 32
    # the subject key was wrapped before the rotation
    assert db.execute("SELECT root_version FROM subject_keys").fetchall() == [("1",)]


def test_the_other_keyed_derivations(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    vault = Vault(db, roots)
    index_key = vault.index_key()
    ref = subject_ref(index_key, expected["subject_id"])

    idem = expected["idempotency"]
    row = db.execute("SELECT principal, idem_key, request_digest, record_id FROM idempotency").fetchone()
    assert row[0] == idem["principal"] and row[3] == idem["record_id"]
    assert row[1] == keyed(index_key, b"idempotency/v1", idem["key"].encode()).hexdigest()
    request = idem["request"]
    parts = [ref, request["category"].encode(), request["content_type"].encode(), b"-"]
    for name in sorted(request["fields"]):
        parts += [name.encode(), request["fields"][name].encode()]
    assert row[2] == keyed(index_key, b"put-request/v1", *(lp(p) for p in parts)).digest()

    event = expected["event"]
    name, at, mac = db.execute(
        "SELECT name, at, mac FROM subject_events WHERE subject_ref = ?", (ref,)
    ).fetchone()
    assert (name, at) == (event["name"], event["at"])
    assert (
        mac
        == keyed(
            index_key, b"event/v1", ref, b"\x00", name.encode(), b"\x00", repr(at).encode()
        ).digest()
    )


def test_values_sealed_under_the_subject_key(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    grant_id, evidence_column, sealed = db.execute(
        "SELECT grant_id, evidence_reference, evidence_sealed FROM consent_grants"
    ).fetchone()
    assert grant_id == expected["consent"]["grant_id"]
    assert evidence_column == ""  # never in plaintext
    ctx = context("consent-evidence", subject=ref.hex(), grant=grant_id)
    assert (
        decrypt_payload(vault.subject_key(ref), ctx, sealed).decode()
        == expected["consent"]["evidence_reference"]
    )


def test_the_sealed_keyring_opens_to_an_unsealed_one(expected: dict[str, Any]) -> None:
    sealed = expected["sealed_keyring"]
    doc = json.loads((VECTORS / sealed["file"]).read_text())
    assert set(doc) == {"format", "sealed"} and doc["format"] == KEYRING_FORMAT
    inner = open_sealed_keyring(doc, sealed["passphrase"].encode())
    assert inner["primary"] == "1"
    assert [v["version"] for v in inner["versions"]] == ["1"]
    assert len(root_keys(inner)["1"]) == 32
    with pytest.raises(InvalidTag):
        open_sealed_keyring(doc, b"not the passphrase")


# --- tampering: the independent decoder fails closed ---------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def test_a_flipped_byte_of_a_wrapped_key_fails_its_tag(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    root_version, wrapped = db.execute("SELECT root_version, wrapped FROM subject_keys").fetchone()
    assert unwrap_local(roots, root_version, wrapped, "subject-key", subject=ref.hex())
    for index in (1, 12, 13, 44, 45, 60):  # nonce, key ciphertext, tag
        with pytest.raises(InvalidTag):
            unwrap_local(roots, root_version, _flip(wrapped, index), "subject-key", subject=ref.hex())
    with pytest.raises(FormatError):  # the format byte
        unwrap_local(roots, root_version, _flip(wrapped, 0), "subject-key", subject=ref.hex())
    # the same bytes under another context: another subject, or without the root_version item
    with pytest.raises(InvalidTag):
        unwrap_local(roots, root_version, wrapped, "subject-key", subject=bytes(32).hex())
    with pytest.raises(InvalidTag):
        unwrap(roots[root_version], wrapped, context("subject-key", subject=ref.hex()))
    # and under the other root version
    with pytest.raises(InvalidTag):
        unwrap(roots["2"], wrapped, context("subject-key", root_version=root_version, subject=ref.hex()))


def test_a_flipped_byte_of_a_payload_fails_its_tag(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    text = expected["records"][0]
    record_id, version, category = text["record_id"], text["version"], text["category"]
    data_key = vault.data_key(ref, record_id, version, category, "subject")
    (ct,) = db.execute(
        "SELECT ciphertext FROM record_payloads WHERE record_id = ? AND field = 'text'", (record_id,)
    ).fetchone()
    ctx = record_context("payload", ref, record_id, version, category, field="text")
    assert decrypt_payload(data_key, ctx, ct).hex() == text["fields"]["text"]
    for index in (HEADER, HEADER + 5, len(ct) - 1):  # ciphertext and tag of the final chunk
        with pytest.raises(InvalidTag):
            decrypt_payload(data_key, ctx, _flip(ct, index))
    for index in (0, 30):  # salt, commitment: refused before any chunk is opened
        with pytest.raises(CommitmentMismatch):
            decrypt_payload(data_key, ctx, _flip(ct, index))
    # moved to another field, or another version: the commitment does not match
    for other in (
        record_context("payload", ref, record_id, version, category, field="budget"),
        record_context("payload", ref, record_id, version - 1, category, field="text"),
    ):
        with pytest.raises(CommitmentMismatch):
            decrypt_payload(data_key, other, ct)
    # the stored data key flipped
    (wrapped,) = db.execute(
        "SELECT wrapped FROM record_keys WHERE record_id = ?", (record_id,)
    ).fetchone()
    db.execute("UPDATE record_keys SET wrapped = ? WHERE record_id = ?", (_flip(wrapped, 20), record_id))
    with pytest.raises(InvalidTag):
        vault.data_key(ref, record_id, version, category, "subject")


def test_a_flipped_byte_or_a_truncation_of_content_fails(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    photo = expected["records"][1]
    record_id, version, category = photo["record_id"], photo["version"], photo["category"]
    data_key = vault.data_key(ref, record_id, version, category, "subject")
    blob = blob_path(f"{record_id}.v{version}").read_bytes()
    ctx = record_context("payload", ref, record_id, version, category, field="content")
    for index in (HEADER + 1, HEADER + SEALED_CHUNK + 7, len(blob) - 1):  # chunks 0, 1 and 2
        with pytest.raises(InvalidTag):
            decrypt_payload(data_key, ctx, _flip(blob, index))
    with pytest.raises(FormatError):  # the final chunk dropped: a whole number of full chunks
        decrypt_payload(data_key, ctx, blob[: HEADER + 2 * SEALED_CHUNK])
    with pytest.raises(FormatError):  # cut inside the final chunk's tag
        decrypt_payload(data_key, ctx, blob[: HEADER + 2 * SEALED_CHUNK + 15])
    with pytest.raises(InvalidTag):  # cut inside chunk 1: its remainder is opened as final, and fails
        decrypt_payload(data_key, ctx, blob[: HEADER + SEALED_CHUNK + 1000])
    with pytest.raises(InvalidTag):  # two chunks swapped
        body = blob[HEADER:]
        swapped = body[SEALED_CHUNK : 2 * SEALED_CHUNK] + body[:SEALED_CHUNK] + body[2 * SEALED_CHUNK :]
        decrypt_payload(data_key, ctx, blob[:HEADER] + swapped)


# --- the specification and the vectors themselves ------------------------------------------------------


def test_the_context_encoding_matches_the_spec_example() -> None:
    """The first worked example of docs/format.md, byte for byte."""
    encoded = context("data-key", subject="ab", record="r-1", version="2", category="notes")
    spec = re.sub(r"\s", "", SPEC.read_text())
    assert encoded.hex() in spec


def test_the_spec_worked_example_is_these_vectors(
    db: sqlite3.Connection, roots: dict[str, bytes], expected: dict[str, Any]
) -> None:
    """The worked example of docs/format.md quotes the committed vectors."""
    vault = Vault(db, roots)
    ref = subject_ref(vault.index_key(), expected["subject_id"])
    spec = re.sub(r"\s", "", SPEC.read_text())
    root_version, wrapped = db.execute("SELECT root_version, wrapped FROM subject_keys").fetchone()
    ctx = context("subject-key", root_version=root_version, subject=ref.hex())
    subject_key = unwrap(roots[root_version], wrapped, ctx)
    text = expected["records"][0]
    record_id, version, category = text["record_id"], text["version"], text["category"]
    (budget,) = db.execute(
        "SELECT ciphertext FROM record_payloads WHERE record_id = ? AND field = 'budget'", (record_id,)
    ).fetchone()
    data_key = vault.data_key(ref, record_id, version, category, "subject")
    dctx = record_context("data-key", ref, record_id, version, category)
    (wrapped_data_key,) = db.execute(
        "SELECT wrapped FROM record_keys WHERE record_id = ?", (record_id,)
    ).fetchone()
    pctx = record_context("payload", ref, record_id, version, category, field="budget")
    key, base_nonce, commitment = derive_message_keys(data_key, budget[:24], pctx)
    for value in (
        roots[root_version],
        vault.index_key(),
        ref,
        ctx,
        KEYWRAP_AAD + ctx,
        wrapped,
        subject_key,
        dctx,
        wrapped_data_key,
        data_key,
        pctx,
        budget,
        key,
        base_nonce,
        commitment,
        bytes.fromhex(text["fields"]["budget"]),
    ):
        assert value.hex() in spec, value.hex()


def _manifest() -> dict[str, tuple[int, str]]:
    text = (VECTORS / "README.md").read_text()
    rows = re.findall(r"^\| (\S+) \| (\d+) \| `([0-9a-f]{64})` \|$", text, flags=re.M)
    return {name: (int(size), digest) for name, size, digest in rows}


def test_the_vectors_are_what_their_manifest_says() -> None:
    listed = _manifest()
    on_disk = {p.relative_to(VECTORS).as_posix() for p in VECTORS.rglob("*") if p.is_file()} - {
        "README.md"
    }
    assert on_disk == set(listed), "README.md must list exactly the vector files present"
    for name, (size, digest) in listed.items():
        data = (VECTORS / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), name
    assert sum(size for size, _ in listed.values()) < 1_000_000


def test_the_database_copy_needs_no_wal() -> None:
    data = (VECTORS / "vault.db").read_bytes()
    assert data[:16] == b"SQLite format 3\x00"
    assert data[18:20] == b"\x01\x01"  # rollback journal: reading it creates no -wal or -shm file


def test_this_decoder_imports_nothing_of_the_service() -> None:
    tree = ast.parse(HERE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not {m for m in imported if m.split(".")[0] in {"vault_service", "tests"}}
