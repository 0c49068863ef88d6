"""vaultctl record import and get-many against a served port: per-line results, a malformed line
refused alone, an import resumed by running it again (nothing stored twice), get-many's
per-record lines and exit codes."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

from tests.conftest import TOKENS, write_config
from tests.support.serve import start_serving, stop_serving, vaultctl

ENV = {"VAULT_SERVICE_TOKEN": TOKENS["app"]}


def _lines(*docs: object) -> bytes:
    return b"".join((d if isinstance(d, bytes) else json.dumps(d).encode()) + b"\n" for d in docs)


def _import(home: Path, address: str, file: Path, results: Path, *more: str) -> tuple[int, list[dict]]:
    r = vaultctl(
        home,
        "--json",
        "record",
        "import",
        "--address",
        address,
        "--file",
        str(file),
        "--results",
        str(results),
        *more,
        env=ENV,
    )
    return r.returncode, [json.loads(line) for line in results.read_text().splitlines()]


def test_import_resumes_and_get_many_reads_back(tmp_path: Path) -> None:
    write_config(tmp_path)
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
        good = [
            {"subject_id": f"imp-{i % 3}", "category": "concern_text", "fields": {"text": f"line {i}"}}
            for i in range(7)
        ]
        photo = {
            "subject_id": "imp-0",
            "category": "concern_photo",
            "fields": {"caption": "c"},
            "content_base64": base64.b64encode(b"\x89PNG-bytes").decode(),
        }
        bad = [b"{not json", {"subject_id": "imp-1", "category": "no_such", "fields": {}}]
        whole = tmp_path / "records.jsonl"
        whole.write_bytes(_lines(*good[:4], bad[0], photo, bad[1], *good[4:]))
        half = tmp_path / "half.jsonl"  # the first lines only: an import that stopped part-way
        half.write_bytes(_lines(*good[:4]))

        code, first = _import(tmp_path, address, half, tmp_path / "r1.jsonl", "--batch", "3")
        assert code == 0 and [o["line"] for o in first] == [1, 2, 3, 4]
        results = tmp_path / "r2.jsonl"
        code, out = _import(tmp_path, address, whole, results, "--batch", "4")
        assert code == 1  # two lines refused
        assert stat.S_IMODE(os.stat(results).st_mode) == 0o600
        assert [o["line"] for o in out] == list(range(1, 11))
        assert out[4]["error"]["status"] == "INVALID_ARGUMENT"  # malformed: never sent
        assert "not json" not in json.dumps(out[4])
        assert out[6]["error"]["status"] == "INVALID_ARGUMENT"  # the server's refusal
        # resumed: the lines stored the first time are found by their keys, not stored again
        assert [o["record_id"] for o in out[:4]] == [o["record_id"] for o in first]
        code, again = _import(tmp_path, address, whole, tmp_path / "r3.jsonl")
        assert [o.get("record_id") for o in again] == [o.get("record_id") for o in out]
        ids = [o["record_id"] for o in out if "record_id" in o]
        assert len(ids) == len(set(ids)) == 8

        r = vaultctl(
            tmp_path,
            "record",
            "get-many",
            "--address",
            address,
            "--purpose",
            "matching",
            "--id",
            ids[0],
            "--id",
            "01a2013c-0000-7000-8000-000000000000",
            "--id",
            ids[4],
            env=ENV,
        )
        assert r.returncode == 1, r.stderr  # one record is not found
        got = [json.loads(line) for line in r.stdout.splitlines()]
        assert got[0]["fields"] == {"text": "line 0"}
        assert got[1]["error"]["status"] == "NOT_FOUND"
        assert got[2]["category"] == "concern_photo" and got[2]["content_length"] == len(
            b"\x89PNG-bytes"
        )
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        r = vaultctl(
            tmp_path,
            "record",
            "get-many",
            "--address",
            address,
            "--purpose",
            "matching",
            "--ids-file",
            str(ids_file),
            "--batch",
            "3",
            env=ENV,
        )
        assert r.returncode == 0, r.stderr
        assert [json.loads(line)["record_id"] for line in r.stdout.splitlines()] == ids
    finally:
        assert stop_serving(proc) == 0
