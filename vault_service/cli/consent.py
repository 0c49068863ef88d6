"""vaultctl consent: a subject's consent grants (grant, revoke, list), over gRPC.

Contract: each command calls a running server with the caller's token and prints the grants as
the server returns them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from vault_service.cli.common import Output, add_client_args, client_of


def _consent_dict(c: Any) -> dict[str, Any]:
    return {
        "grant_id": c.grant_id,
        "purpose": c.purpose,
        "grantee_principal": c.grantee_principal,
        "grantee_role": c.grantee_role,
        "scopes": {k: list(v) for k, v in c.scopes.items()},
        "valid_from": c.valid_from,
        "valid_until": c.valid_until,
        "evidence_reference": c.evidence_reference,
        "revoked_at": c.revoked_at,
    }


def cmd_consent_grant(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    scopes: dict[str, list[str] | None] = {}
    for scope in args.scope:
        category, _, fields = scope.partition(":")
        scopes[category] = fields.split(",") if fields else None
    with client_of(args, env) as client:
        consent = client.grant_consent(
            args.subject,
            args.purpose,
            scopes,
            evidence_reference=args.evidence,
            grantee_principal=args.principal or "",
            grantee_role=args.role or "",
            valid_until=args.valid_until or 0.0,
            party=args.party,
        )
    out.emit(_consent_dict(consent), f"granted {consent.grant_id}")
    return 0


def cmd_consent_revoke(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        consent = client.revoke_consent(args.grant_id)
    out.emit(_consent_dict(consent), f"revoked {consent.grant_id}")
    return 0


def cmd_consent_list(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    with client_of(args, env) as client:
        consents = client.list_consents(args.subject)
    lines = [
        f"{c.grant_id} {c.purpose:<18} {c.grantee_principal or 'role:' + c.grantee_role:<20}"
        f" {'revoked' if c.revoked_at else 'active'}"
        for c in consents
    ]
    out.emit({"consents": [_consent_dict(c) for c in consents]}, "\n".join(lines) or "(none)")
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl consent ..."""
    consent = sub.add_parser("consent", help="consent grants (over gRPC)").add_subparsers(
        dest="consent_cmd", required=True
    )
    grant = consent.add_parser("grant", help="record a subject's consent")
    add_client_args(grant)
    grant.add_argument("--subject", required=True)
    grant.add_argument("--purpose", required=True)
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument("--principal", help="the grantee principal")
    who.add_argument("--role", help="every principal of this role")
    grant.add_argument("--scope", action="append", required=True, metavar="CATEGORY[:F1,F2]")
    grant.add_argument("--evidence", required=True, help="where the consent is evidenced")
    grant.add_argument("--valid-until", type=float, default=None, help="unix time")
    grant.add_argument(
        "--party", default="", help="which party consents (a purpose with consent_parties)"
    )
    grant.set_defaults(fn=cmd_consent_grant)
    revoke = consent.add_parser("revoke")
    add_client_args(revoke)
    revoke.add_argument("grant_id")
    revoke.set_defaults(fn=cmd_consent_revoke)
    listing = consent.add_parser("list")
    add_client_args(listing)
    listing.add_argument("--subject", required=True)
    listing.set_defaults(fn=cmd_consent_list)
