"""vaultctl record: record calls against a running server (put, get, upload, download).

Contract: put and get move a record's fields (and a small content object) in one call; upload and
download stream large content, with a progress bar on a terminal; files written are private
(0600). ``--field NAME=VALUE`` is parsed here (:func:`_fields`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vault_service.cli import record_batches
from vault_service.cli.common import Output, add_client_args, client_of
from vault_service.errors import ConfigError, shown


def _fields(pairs: Sequence[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--field expects NAME=VALUE, got {shown(pair)}")
        fields[name] = value
    return fields


def cmd_record_put(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    content = Path(args.content_file).read_bytes() if args.content_file else None
    with client_of(args, env) as client:
        result = client.put_record(
            args.subject,
            args.category,
            _fields(args.field),
            content=content,
            content_type=args.content_type,
            idempotency_key=args.idempotency_key,
        )
    out.emit(
        {"record_id": result.record_id, "version": result.version},
        f"stored record {result.record_id} (version {result.version})",
    )
    return 0


def cmd_record_get(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        record = client.get_record(
            args.id, args.purpose, fields=args.field or None, include_content=bool(args.content_out)
        )
    if args.content_out and record.content is not None:
        fd = os.open(args.content_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(record.content)
    info = record.info
    data = {
        "record_id": info.record_id,
        "category": info.category,
        "version": info.version,
        "fields": dict(record.fields),
        "content_type": info.content_type,
        "content_length": info.content_length,
    }
    text = "\n".join(
        [f"record {info.record_id} ({info.category}, version {info.version})"]
        + [f"  {k}: {v}" for k, v in sorted(record.fields.items())]
    )
    out.emit(data, text)
    return 0


def _bytes_bar(done: int, total: int | None) -> None:
    if total:
        width = 40
        filled = width * done // total
        sys.stderr.write(
            f"\r[{'#' * filled}{' ' * (width - filled)}] {done / 1048576:.1f}/{total / 1048576:.1f} MiB"
        )
    else:
        sys.stderr.write(f"\r{done / 1048576:.1f} MiB")
    sys.stderr.flush()


def cmd_record_upload(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    show = sys.stderr.isatty() and not out.as_json
    with client_of(args, env) as client:
        result = client.upload_record(
            args.file,
            subject_id=args.subject or "",
            category=args.category or "",
            fields=_fields(args.field),
            content_type=args.content_type,
            idempotency_key=args.idempotency_key,
            record_id=args.record_id or "",
            expected_version=args.expected_version,
            progress=_bytes_bar if show else None,
        )
    if show:
        sys.stderr.write("\n")
    out.emit(
        {"record_id": result.record_id, "version": result.version},
        f"uploaded {args.file} as record {result.record_id} (version {result.version})",
    )
    return 0


def cmd_record_download(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    show = sys.stderr.isatty() and not out.as_json
    with client_of(args, env) as client:
        total = None
        if show:
            total = client.get_record(args.id, args.purpose, fields=["content"]).info.content_length
        written = client.download_to(
            args.out, args.id, args.purpose, progress=_bytes_bar if show else None, total=total
        )
    if show:
        sys.stderr.write("\n")
    out.emit(
        {"record_id": args.id, "bytes": written, "file": args.out},
        f"downloaded {written} bytes to {args.out}",
    )
    return 0


def cmd_record_restrict(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    """restrict / lift one record; exit 1 if nothing changed (already so)."""
    restricted = args.record_cmd == "restrict"
    with client_of(args, env) as client:
        changed = client.restrict_record(args.id, restricted)
    said = "record restricted" if restricted else "record restriction lifted"
    out.emit({"changed": changed, "restricted": restricted}, said if changed else "unchanged")
    return 0 if changed else 1


def add_parser(sub: Any) -> None:
    """vaultctl record ... (smoke tests against a running server)"""
    rec = sub.add_parser("record", help="record calls against a running server")
    rec_sub = rec.add_subparsers(dest="record_cmd", required=True)
    record_batches.add_parsers(rec_sub)
    up = rec_sub.add_parser("upload", help="stream a file as a record's content (progress bar)")
    add_client_args(up)
    up.add_argument("--file", required=True)
    up.add_argument("--subject", help="for a new record")
    up.add_argument("--category", help="for a new record")
    up.add_argument("--record-id", help="upload a new version of this record instead")
    up.add_argument("--expected-version", type=int, default=0)
    up.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
    up.add_argument("--content-type", default="")
    up.add_argument("--idempotency-key", default="")
    up.set_defaults(fn=cmd_record_upload)
    down = rec_sub.add_parser("download", help="stream a record's content to a file")
    add_client_args(down)
    down.add_argument("--id", required=True)
    down.add_argument("--purpose", required=True)
    down.add_argument("--out", required=True, help="written 0600, renamed into place when done")
    down.set_defaults(fn=cmd_record_download)
    for name, help_text in (
        ("restrict", "restrict processing of one record (a correction or deletion in progress)"),
        ("lift", "lift a record's restriction"),
    ):
        r = rec_sub.add_parser(name, help=help_text)
        add_client_args(r)
        r.add_argument("--id", required=True)
        r.set_defaults(fn=cmd_record_restrict)
    for name in ("put", "get"):
        r = rec_sub.add_parser(name)
        add_client_args(r)
        if name == "put":
            r.add_argument("--subject", required=True)
            r.add_argument("--category", required=True)
            r.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
            r.add_argument("--content-file")
            r.add_argument("--content-type", default="")
            r.add_argument("--idempotency-key", default="")
            r.set_defaults(fn=cmd_record_put)
        else:
            r.add_argument("--id", required=True)
            r.add_argument("--purpose", required=True)
            r.add_argument("--field", action="append", default=[], metavar="NAME")
            r.add_argument("--content-out", help="write the content object to this file (0600)")
            r.set_defaults(fn=cmd_record_get)
