"""vaultctl share and vaultctl event: time-limited shares and the business events that end them,
over gRPC.

Contract: share create, read, revoke and list, and event record, each call a running server with
the caller's token; share read writes content objects, if asked, to private files (0600).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault_service.cli.common import Output, add_client_args, client_of


def _share_dict(sh: Any) -> dict[str, Any]:
    return {
        "share_id": sh.share_id,
        "recipient": sh.recipient,
        "purpose": sh.purpose,
        "record_count": sh.record_count,
        "fields": list(sh.fields),
        "expires_at": sh.expires_at,
        "event_name": sh.event_name,
        "event_period_seconds": sh.event_period_seconds,
        "created_at": sh.created_at,
        "revoked_at": sh.revoked_at,
    }


def cmd_share_create(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        share = client.create_share(
            args.subject,
            args.recipient,
            args.purpose,
            args.record,
            args.field,
            expires_at=args.expires_at or 0.0,
            event_name=args.event or "",
            event_period_seconds=(args.event_period_days or 0.0) * 86400,
        )
    out.emit(_share_dict(share), f"share {share.share_id} to {share.recipient}")
    return 0


def cmd_share_read(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    records: list[dict[str, Any]] = []
    content_dir = Path(args.content_dir) if args.content_dir else None
    with client_of(args, env) as client:
        for item in client.read_share(args.share_id):
            if isinstance(item, tuple):
                record_id, offset, data = item
                if content_dir is not None:
                    content_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    fd = os.open(content_dir / record_id, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "r+b") as f:
                        f.seek(offset)
                        f.write(data)
                continue
            records.append(
                {
                    "record_id": item.info.record_id,
                    "category": item.info.category,
                    "fields": dict(item.fields),
                }
            )
    lines = [f"{r['record_id']} {r['category']}: {r['fields']}" for r in records]
    out.emit({"records": records}, "\n".join(lines) or "(nothing)")
    return 0


def cmd_share_revoke(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        share = client.revoke_share(args.share_id)
    out.emit(_share_dict(share), f"revoked {share.share_id}")
    return 0


def cmd_share_list(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        shares = client.list_shares(args.subject) if args.subject else client.received_shares()
    lines = [
        f"{sh.share_id} -> {sh.recipient} {sh.purpose} {len(sh.fields)} fields"
        f"{' (revoked)' if sh.revoked_at else ''}"
        for sh in shares
    ]
    out.emit({"shares": [_share_dict(sh) for sh in shares]}, "\n".join(lines) or "(none)")
    return 0


def cmd_event_record(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        recorded = client.record_event(args.subject, args.name, args.at or 0.0)
    out.emit({"recorded": recorded}, "recorded" if recorded else "already recorded")
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl share ... and vaultctl event ..."""
    share = sub.add_parser("share", help="time-limited shares (over gRPC)").add_subparsers(
        dest="share_cmd", required=True
    )
    create = share.add_parser("create", help="share records with a recipient")
    add_client_args(create)
    create.add_argument("--subject", required=True)
    create.add_argument("--recipient", required=True)
    create.add_argument("--purpose", required=True)
    create.add_argument("--record", action="append", required=True, metavar="RECORD_ID")
    create.add_argument("--field", action="append", required=True, metavar="FIELD")
    create.add_argument("--expires-at", type=float, default=None, help="unix time")
    create.add_argument("--event", help="ends --event-period-days after this event")
    create.add_argument("--event-period-days", type=float, default=None)
    create.set_defaults(fn=cmd_share_create)
    read = share.add_parser("read", help="read a share you received")
    add_client_args(read)
    read.add_argument("share_id")
    read.add_argument("--content-dir", help="write content objects here (files 0600)")
    read.set_defaults(fn=cmd_share_read)
    revoke = share.add_parser("revoke")
    add_client_args(revoke)
    revoke.add_argument("share_id")
    revoke.set_defaults(fn=cmd_share_revoke)
    listing = share.add_parser(
        "list", help="a subject's shares, or (without --subject) the shares you received"
    )
    add_client_args(listing)
    listing.add_argument("--subject")
    listing.set_defaults(fn=cmd_share_list)
    event = sub.add_parser("event", help="business events").add_subparsers(
        dest="event_cmd", required=True
    )
    rec = event.add_parser("record", help="record a business event of a subject")
    add_client_args(rec)
    rec.add_argument("--subject", required=True)
    rec.add_argument("--name", required=True)
    rec.add_argument("--at", type=float, default=None, help="unix time (default: now)")
    rec.set_defaults(fn=cmd_event_record)
