"""vaultctl retention, dormancy, hold and blobs: what happens to data over time.

Contract: the sweeps (retention, dormancy, blobs) run in-process on the assembled service, as the
server's background jobs do (retention has a dry run that changes nothing); legal holds are
placed, released and listed over gRPC.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from vault_service.cli.common import Output, add_client_args, assembly_of, client_of, config_of


def cmd_retention_sweep(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    config = config_of(args, env)
    assembly = assembly_of(config, env)
    try:
        done = assembly.service.sweep_retention(batch=args.batch_size, dry_run=args.dry_run)
    finally:
        assembly.store.close()
    verb = "due" if args.dry_run else "shredded"
    out.emit(
        {"dry_run": args.dry_run, verb: [{"record_id": r, "rule": rule} for r, rule in done]},
        "\n".join(f"{verb}: {r} ({rule})" for r, rule in done) or f"nothing {verb}",
    )
    return 0


def cmd_dormancy_sweep(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    assembly = assembly_of(config_of(args, env), env)
    try:
        counts = assembly.service.sweep_dormancy()
    finally:
        assembly.store.close()
    out.emit(counts, ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def cmd_dormancy_notices(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        notices = list(client.iter_notices(args.kind))
    out.emit(
        {"notices": notices},
        "\n".join(
            f"{n['kind']} {n['subject_id'] or n['subject_pseudonym']} due {n['due_at']:.0f},"
            f" effective {n['effective_at']:.0f}"
            for n in notices
        )
        or "(none due)",
    )
    return 0


def cmd_hold(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        if args.hold_cmd == "place":
            hold = client.place_hold(args.subject, args.reason, args.case, args.record or "")
            out.emit(hold, f"hold {hold['hold_id']} placed")
        elif args.hold_cmd == "release":
            hold, done = client.release_hold(args.hold_id)
            out.emit(
                {**hold, "deletions_carried_out": done},
                f"hold {hold['hold_id']} released; {done} deferred deletions carried out",
            )
        else:
            holds = client.list_holds(args.subject)
            out.emit(
                {"holds": holds},
                "\n".join(
                    f"{h['hold_id']} {h['case_reference']} "
                    f"{'released' if h['released_at'] else 'active'}"
                    for h in holds
                )
                or "(none)",
            )
    return 0


def cmd_blobs_sweep(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    config = config_of(args, env)
    assembly = assembly_of(config, env)
    try:
        age = (
            args.min_age_seconds
            if args.min_age_seconds is not None
            else config.storage.partial_upload_max_age_seconds
        )
        removed = assembly.service.sweep_blobs(age)
    finally:
        assembly.store.close()
    out.emit({"removed": removed}, f"removed {removed} partial or orphan blobs")
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl blobs ..., retention ..., dormancy ... and hold ..."""
    blobs = sub.add_parser("blobs", help="blob storage").add_subparsers(dest="blobs_cmd", required=True)
    sweep = blobs.add_parser("sweep", help="remove partial uploads and orphan blobs")
    sweep.add_argument("--min-age-seconds", type=float, default=None)
    sweep.set_defaults(fn=cmd_blobs_sweep)

    retention = sub.add_parser("retention", help="retention rules").add_subparsers(
        dest="retention_cmd", required=True
    )
    sweep = retention.add_parser("sweep", help="shred every record its retention rule says is due")
    sweep.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    sweep.add_argument("--batch-size", type=int, default=200)
    sweep.set_defaults(fn=cmd_retention_sweep)

    dormancy = sub.add_parser("dormancy", help="dormant subjects").add_subparsers(
        dest="dormancy_cmd", required=True
    )
    dormancy.add_parser(
        "sweep", help="notices, dormancy and destruction of dormant subjects"
    ).set_defaults(fn=cmd_dormancy_sweep)
    notices = dormancy.add_parser("notices", help="the notices due for the application to send")
    add_client_args(notices)
    notices.add_argument("--kind", default="", help="only this kind (dormancy)")
    notices.set_defaults(fn=cmd_dormancy_notices)

    hold = sub.add_parser("hold", help="legal holds (over gRPC)").add_subparsers(
        dest="hold_cmd", required=True
    )
    place = hold.add_parser("place")
    add_client_args(place)
    place.add_argument("--subject", required=True)
    place.add_argument("--record", help="one record only")
    place.add_argument("--reason", required=True)
    place.add_argument("--case", required=True, help="case reference")
    place.set_defaults(fn=cmd_hold)
    release = hold.add_parser("release")
    add_client_args(release)
    release.add_argument("hold_id")
    release.set_defaults(fn=cmd_hold)
    listing = hold.add_parser("list")
    add_client_args(listing)
    listing.add_argument("--subject", required=True)
    listing.set_defaults(fn=cmd_hold)
