"""vaultctl record import / get-many: many records per call (BatchPutRecords, BatchGetRecords).

Contract of ``import``: reads JSON lines (one record per line: ``subject_id``, ``category``,
``fields``, optional ``content_type``, ``content_base64`` and ``idempotency_key``), sends them in
batches, and writes one result line per input line (``--results``, 0600; default standard
output). A line without an ``idempotency_key`` gets one derived from its position and bytes, so
an import that stopped half-way (a crash, UNAVAILABLE) is **resumed by running it again**: what
was stored is found by its key and stored nothing more. A malformed line is that line's
INVALID_ARGUMENT and is not sent. Exit 0 if every line was stored, 1 if any was refused.

Contract of ``get-many``: reads record ids (``--id`` or ``--ids-file``, one per line), prints one
JSON line per record (its fields, or its error); content objects are never printed. Exit 0 if
every record was released, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from vault_service.cli.common import Output, add_client_args, client_of
from vault_service.client import RecordToGet, RecordToPut
from vault_service.client.batches import MAX_BATCH_ITEMS
from vault_service.errors import Status, VaultError

#: the JSON keys of an import line
_KEYS = {"subject_id", "category", "fields", "content_type", "content_base64", "idempotency_key"}


def _line_key(number: int, raw: bytes) -> str:
    """The idempotency key of an import line that has none: its position and bytes."""
    return "import-" + hashlib.sha256(number.to_bytes(8, "big") + raw).hexdigest()[:40]


def _parse(number: int, raw: bytes) -> RecordToPut:
    """One import line; ValueError (with no value of the line in it) if malformed."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not a JSON object") from None
    if not isinstance(doc, dict) or not doc.keys() <= _KEYS:
        raise ValueError(f"a JSON object with keys among {', '.join(sorted(_KEYS))}")
    fields = doc.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise ValueError("fields must map names to strings")
    texts = [doc.get(k, "") for k in ("subject_id", "category", "content_type", "idempotency_key")]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("subject_id, category, content_type and idempotency_key are strings")
    content = None
    if "content_base64" in doc:
        try:
            content = base64.b64decode(str(doc["content_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("content_base64 is not base64") from None
    return RecordToPut(
        subject_id=texts[0],
        category=texts[1],
        fields=fields,
        content=content,
        content_type=texts[2],
        idempotency_key=texts[3] or _line_key(number, raw),
    )


def _bar(done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} records")
    sys.stderr.flush()


@contextmanager
def _results_file(path: str | None) -> Iterator[TextIO]:
    if not path:
        yield sys.stdout
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yield f


def _error(exc: VaultError) -> dict[str, str]:
    return {"status": exc.status.value, "message": str(exc)}


def cmd_record_import(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with open(args.file, "rb") as f:
        lines = [(n, raw.rstrip(b"\r\n")) for n, raw in enumerate(f, start=1) if raw.strip()]
    outcomes: dict[int, dict[str, Any]] = {}
    to_send: list[tuple[int, RecordToPut]] = []
    for n, raw in lines:
        try:
            to_send.append((n, _parse(n, raw)))
        except ValueError as exc:
            outcomes[n] = {
                "line": n,
                "error": {"status": Status.INVALID_ARGUMENT.value, "message": str(exc)},
            }
    show = sys.stderr.isatty() and not out.as_json
    total = len(to_send)
    with client_of(args, env) as client:
        results = client.put_records(
            [r for _, r in to_send],
            batch_size=args.batch,
            progress=(lambda done: _bar(done, total)) if show else None,
        )
    if show:
        sys.stderr.write("\n")
    for (n, _), result in zip(to_send, results, strict=True):
        if isinstance(result, VaultError):
            outcomes[n] = {"line": n, "error": _error(result)}
        else:
            outcomes[n] = {"line": n, "record_id": result.record_id, "version": result.version}
    refused = sum(1 for o in outcomes.values() if "error" in o)
    with _results_file(args.results) as f:
        for n in sorted(outcomes):
            f.write(json.dumps(outcomes[n], sort_keys=True) + "\n")
    stored = len(outcomes) - refused
    summary = {"stored": stored, "refused": refused, "lines": len(outcomes)}
    text = f"stored {stored} of {len(outcomes)} records" + (f"; {refused} refused" if refused else "")
    if args.results:  # standard output is free for the summary
        out.emit(summary, text)
    else:
        sys.stderr.write(text + "\n")
    return 1 if refused else 0


def cmd_record_get_many(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    ids = list(args.id)
    if args.ids_file:
        with open(args.ids_file, encoding="utf-8") as f:
            ids += [line.strip() for line in f if line.strip()]
    asks = [RecordToGet(i, args.purpose, fields=args.field) for i in ids]
    with client_of(args, env) as client:
        results = client.get_records(asks, batch_size=args.batch)
    failed = 0
    for record_id, result in zip(ids, results, strict=True):
        if isinstance(result, VaultError):
            failed += 1
            line: dict[str, Any] = {"record_id": record_id, "error": _error(result)}
        else:
            info = result.info
            line = {
                "record_id": info.record_id,
                "category": info.category,
                "version": info.version,
                "fields": dict(result.fields),
                "content_length": info.content_length,
            }
            if info.subject_pseudonym:
                line["subject_pseudonym"] = info.subject_pseudonym
        print(json.dumps(line, sort_keys=True))
    return 1 if failed else 0


def add_parsers(rec_sub: Any) -> None:
    """``record import`` and ``record get-many`` under ``vaultctl record``."""
    imp = rec_sub.add_parser(
        "import", help="store records from a JSON-lines file in batches (resumable: run it again)"
    )
    add_client_args(imp)
    imp.add_argument("--file", required=True, help="JSON lines: subject_id, category, fields, ...")
    imp.add_argument("--results", help="write the per-line results here (0600) instead of stdout")
    imp.add_argument("--batch", type=int, default=MAX_BATCH_ITEMS, help="records per call")
    imp.set_defaults(fn=cmd_record_import)
    many = rec_sub.add_parser("get-many", help="read many records for one purpose, in batches")
    add_client_args(many)
    many.add_argument("--purpose", required=True)
    many.add_argument("--id", action="append", default=[], help="a record id (repeatable)")
    many.add_argument("--ids-file", help="record ids, one per line")
    many.add_argument("--field", action="append", default=[], metavar="NAME")
    many.add_argument("--batch", type=int, default=100, help="records per call")
    many.set_defaults(fn=cmd_record_get_many)
