"""vaultctl subject: data-subject rights (restrict, lift, export), over gRPC.

Contract: restrict and lift exit 1 for an unknown subject; export writes every record of the
subject, decrypted, as JSON lines to a file created private (0600).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from vault_service.cli.common import ExportFile, Output, add_client_args, client_of


def cmd_subject_restrict(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    restricted = args.subject_cmd == "restrict"
    with client_of(args, env) as client:
        changed = client.restrict_processing(args.subject, restricted)
    out.emit(
        {"changed": changed, "restricted": restricted},
        ("restricted" if restricted else "restriction lifted") if changed else "no such subject",
    )
    return 0 if changed else 1


def cmd_subject_export(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with ExportFile(args.out) as export, client_of(args, env) as client:
        for record in client.export_subject(args.subject, args.purpose):
            export.write(record.info, record.fields, record.content)
    out.emit(
        {"records": export.count, "file": args.out},
        f"exported {export.count} records to {args.out}",
    )
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl subject ..."""
    subject = sub.add_parser("subject", help="subject rights (over gRPC)").add_subparsers(
        dest="subject_cmd", required=True
    )
    for name, help_text in (("restrict", "restrict processing"), ("lift", "lift a restriction")):
        p = subject.add_parser(name, help=help_text)
        add_client_args(p)
        p.add_argument("--subject", required=True)
        p.set_defaults(fn=cmd_subject_restrict)
    export = subject.add_parser("export", help="every record, decrypted, as JSON lines")
    add_client_args(export)
    export.add_argument("--subject", required=True)
    export.add_argument("--purpose", default="subject_access")
    export.add_argument("--out", required=True, help="output file (created 0600)")
    export.set_defaults(fn=cmd_subject_export)
