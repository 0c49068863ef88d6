"""Tampering that keeps every row well-formed: a record's rows rolled back to an earlier version
(wholly, or one table at a time), and values of the wrong type in ciphertext columns. Each read
answers DATA_LOSS with no plaintext, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS
from tests.support.db import RawDb
from vault_service.errors import DataLoss

pytestmark = pytest.mark.parametrize("vault_home", BACKENDS, indirect=True)

TABLES = {
    "records": "record_id, subject_ref, category, version, content_type, blob_ref, content_length,"
    " field_names, created_at, updated_at, key_kind",
    "record_keys": "record_id, version, wrapped",
    "record_payloads": "record_id, version, field, ciphertext",
}


def _snapshot(home: Path, record_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a backup (or a curious insider) kept of one record's rows."""
    with RawDb(home) as db:
        return {
            table: [
                tuple(row)
                for row in db.execute(f"SELECT {cols} FROM {table} WHERE record_id = ?", (record_id,))
            ]
            for table, cols in TABLES.items()
        }


def _restore(
    home: Path, record_id: str, rows: dict[str, list[tuple[Any, ...]]], tables: list[str]
) -> None:
    """Put the old values back into the rows of ``tables``: the whole record consistently (all
    three), or, one table at a time, the old ciphertext, wrapped key or row columns."""
    whole = len(tables) == len(TABLES)
    with RawDb(home) as db:
        if "records" in tables:  # the row stays (other rows point at it); its columns go back
            (old,) = rows["records"]
            cols = [c.strip() for c in TABLES["records"].split(",")]
            db.execute(
                "UPDATE records SET " + ", ".join(f"{c} = ?" for c in cols[1:]) + " WHERE record_id = ?",
                (*old[1:], record_id),
            )
        if whole:  # the old version's key and payload rows replace the new ones
            db.execute("DELETE FROM record_keys WHERE record_id = ?", (record_id,))
            for table in ("record_keys", "record_payloads"):
                marks = ",".join("?" * len(TABLES[table].split(",")))
                for row in rows[table]:
                    db.execute(f"INSERT INTO {table} ({TABLES[table]}) VALUES ({marks})", row)
            return
        if "record_keys" in tables:  # the current version's key row gets the old wrapped key
            db.execute(
                "UPDATE record_keys SET wrapped = ? WHERE record_id = ?",
                (rows["record_keys"][0][2], record_id),
            )
        if "record_payloads" in tables:  # and its payload rows the old ciphertexts
            for _, _, field, ciphertext in rows["record_payloads"]:
                db.execute(
                    "UPDATE record_payloads SET ciphertext = ? WHERE record_id = ? AND field = ?",
                    (ciphertext, record_id, field),
                )


@pytest.mark.parametrize(
    "tables",
    [
        ["records", "record_keys", "record_payloads"],  # the whole record, consistently
        ["record_payloads"],
        ["record_keys"],
        ["record_keys", "record_payloads"],
        ["records"],
    ],
    ids=["whole-record", "payloads", "key", "key+payloads", "row"],
)
def test_a_record_rolled_back_to_an_older_version_is_data_loss(
    app: Any, vault_home: Path, tables: list[str]
) -> None:
    rid = app.put_record("member-r", "concern_text", {"text": "first diagnosis"}).record_id
    before = _snapshot(vault_home, rid)
    app.update_record(rid, {"text": "corrected by the member"})
    assert app.get_record(rid, "matching").fields["text"] == "corrected by the member"
    _restore(vault_home, rid, before, tables)
    with pytest.raises(DataLoss) as err:
        app.get_record(rid, "matching")
    assert "diagnosis" not in str(err.value) and "corrected" not in str(err.value)


def test_text_and_numbers_in_ciphertext_columns_are_data_loss(app: Any, vault_home: Path) -> None:
    ids = [app.put_record("member-t", "concern_text", {"text": f"t{i}"}).record_id for i in range(3)]
    with RawDb(vault_home) as db:
        if db.backend == "sqlite":  # any type fits any SQLite column
            db.execute(
                "UPDATE record_payloads SET ciphertext = 'plain text' WHERE record_id = ?", (ids[0],)
            )
            db.execute(
                "UPDATE record_payloads SET ciphertext = CAST(X'ff00fe' AS TEXT) WHERE record_id = ?",
                (ids[1],),
            )
            db.execute("UPDATE record_keys SET wrapped = 12345 WHERE record_id = ?", (ids[2],))
        else:  # bytea holds bytes only: the nearest is an empty or short value
            db.execute(
                "UPDATE record_payloads SET ciphertext = ''::bytea WHERE record_id = ?", (ids[0],)
            )
            db.execute(
                "UPDATE record_payloads SET ciphertext = '\\xff'::bytea WHERE record_id = ?", (ids[1],)
            )
            db.execute("UPDATE record_keys SET wrapped = '\\x00'::bytea WHERE record_id = ?", (ids[2],))
    for rid in ids:
        with pytest.raises(DataLoss):
            app.get_record(rid, "matching")
