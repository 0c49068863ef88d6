"""Load and validate a policy from TOML text, with precise errors naming the file and key.

Pure: takes text and a source name (the file path, for messages); the caller reads the file.
See docs/policy.md for the format.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from vault_service.errors import ConfigError
from vault_service.policy.model import (
    CONTENT_FIELD,
    NORMALISATIONS,
    UNTIL_ERASURE,
    Action,
    Category,
    Dormancy,
    Policy,
    Principal,
    PrincipalEntry,
    Purpose,
    RetentionRule,
    Role,
)

#: the names a policy gives (categories, purposes, roles, principals, parties)
NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TOP = {"version", "events", "categories", "purposes", "roles", "principals", "dormancy"}
_DAY = 86400.0
#: business event names (the same rule as the RecordEvent call's)
EVENT = re.compile(r"^[a-z0-9_]{1,64}$")


def check_name(value: str, key: str, source: str = "<policy>") -> None:
    """ConfigError unless ``value`` is a valid name of a category, purpose, role or principal."""
    _Ctx(source).name(value, key)


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {problem}")

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def names(
        self, value: Any, key: str, known: Mapping[str, Any] | None = None, what: str = ""
    ) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        for i, v in enumerate(value):
            if known is not None and v not in known:
                raise self.fail(f"{key}[{i}]", f"unknown {what} {v!r}")
        if len(set(value)) != len(value):
            raise self.fail(key, "has duplicates")
        return frozenset(value)

    def only(self, table: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        for k in table:
            if k not in allowed:
                raise self.fail(
                    f"{key}.{k}" if key else k,
                    f"unknown key (expected one of: {', '.join(sorted(allowed))})",
                )

    def name(self, value: str, key: str) -> None:
        if not NAME.fullmatch(value):
            raise self.fail(key, "names are lower-case letters, digits, '_', '-', '.'")


def _retention(ctx: _Ctx, raw: Any, key: str) -> RetentionRule:
    """``{ after = "creation", days = 1 }``, ``{ after = "event", event = "match_completed",
    days = 180 }``, ``{ read_once = true }`` (with ``days`` and/or ``hours``: shredded that long
    after creation if never read) or absent (kept until erasure)."""
    if raw is None:
        return UNTIL_ERASURE
    t = ctx.table(raw, key)
    ctx.only(t, key, {"after", "days", "hours", "event", "read_once", "survives_erasure"})
    if "read_once" in t and t["read_once"] is not True:
        raise ctx.fail(f"{key}.read_once", "must be true (or left out)")
    days, hours = t.get("days", 0), t.get("hours", 0)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in (days, hours)):
        raise ctx.fail(key, "days and hours must be numbers >= 0")
    period = float(days) * 86400 + float(hours) * 3600
    if t.get("read_once") is True:
        other = sorted(set(t) - {"read_once", "days", "hours"})
        if other:
            raise ctx.fail(f"{key}.{other[0]}", "read_once takes only days and/or hours (a deadline)")
        if ("days" in t or "hours" in t) and period <= 0:
            raise ctx.fail(key, "a read_once deadline needs a positive days and/or hours")
        return RetentionRule("read_once", period)
    survives = t.get("survives_erasure", False)
    if not isinstance(survives, bool):
        raise ctx.fail(f"{key}.survives_erasure", "must be true or false")
    if survives and t.get("after") != "creation":
        raise ctx.fail(f"{key}.survives_erasure", 'only with after = "creation"')
    after = t.get("after")
    if after not in ("creation", "event"):
        raise ctx.fail(f"{key}.after", 'must be "creation" or "event" (or use read_once = true)')
    if period <= 0:
        raise ctx.fail(key, "needs a positive days and/or hours")
    if after == "event":
        event = t.get("event")
        if not isinstance(event, str) or not event:
            raise ctx.fail(f"{key}.event", "the business event the period follows is required")
        if not EVENT.fullmatch(event):
            raise ctx.fail(f"{key}.event", "event names are 1-64 of a-z, 0-9 and _")
        return RetentionRule("after_event", period, event)
    if "event" in t:
        raise ctx.fail(f"{key}.event", 'only with after = "event"')
    return RetentionRule("after_creation", period, survives_erasure=survives)


def _parties(ctx: _Ctx, t: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """``consent_parties = ["client", "counselor"]``: two or more distinct party names."""
    if "consent_parties" not in t:
        return ()
    parties = ctx.names(t["consent_parties"], f"{key}.consent_parties")
    for party in parties:
        ctx.name(party, f"{key}.consent_parties")
    if len(parties) < 2:
        raise ctx.fail(f"{key}.consent_parties", "names two or more parties (or leave it out)")
    return tuple(t["consent_parties"])


def _check_store_consent(
    ctx: _Ctx, category: Category, purposes: Mapping[str, Purpose], key: str
) -> None:
    """A category's ``store_consent`` names a purpose that needs consent and covers it."""
    if not category.store_consent:
        return
    purpose = purposes.get(category.store_consent)
    if purpose is None:
        raise ctx.fail(key, f"unknown purpose {category.store_consent!r}")
    if not purpose.consent_required:
        raise ctx.fail(key, "the purpose must need consent (consent_required or consent_parties)")
    if category.name not in purpose.categories:
        raise ctx.fail(key, "the purpose does not cover this category")


def _searchable(ctx: _Ctx, raw: Any, key: str, fields: frozenset[str]) -> dict[str, str]:
    """``searchable = ["email"]`` (normalisation "casefold") or ``{ email = "casefold",
    chart = "exact" }``: declared text fields only (never the content)."""
    if isinstance(raw, list):
        table: Mapping[str, Any] = dict.fromkeys(ctx.names(raw, key), "casefold")
    else:
        table = ctx.table(raw, key)
    for name, how in table.items():
        if name == CONTENT_FIELD or name not in fields:
            raise ctx.fail(f"{key}.{name}", "not a field of the category (content is not searchable)")
        if how not in NORMALISATIONS:
            raise ctx.fail(f"{key}.{name}", f"must be one of: {', '.join(NORMALISATIONS)}")
    return dict(table)


def _dormancy(ctx: _Ctx, raw: Any) -> Dormancy | None:
    """The ``[dormancy]`` table (absent: dormancy is off)."""
    if raw is None:
        return None
    t = ctx.table(raw, "dormancy")
    ctx.only(
        t, "dormancy", {"after_days", "notice_days", "destroy_after_days", "separate", "description"}
    )

    def days(name: str, default: float | None) -> float:
        value = t.get(name, default)
        if value is None:
            raise ctx.fail(f"dormancy.{name}", "is required")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ctx.fail(f"dormancy.{name}", "must be a number of days >= 0")
        return float(value)

    after = days("after_days", None)
    if after <= 0:
        raise ctx.fail("dormancy.after_days", "must be > 0 (leave out [dormancy] to turn it off)")
    notice = days("notice_days", 0)
    if notice >= after:
        raise ctx.fail("dormancy.notice_days", "must be less than dormancy.after_days")
    separate = t.get("separate", True)
    if not isinstance(separate, bool):
        raise ctx.fail("dormancy.separate", "must be true or false")
    destroy = days("destroy_after_days", 0)
    return Dormancy(after * _DAY, notice * _DAY, destroy * _DAY, separate)


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate; raises ConfigError with ``source: key: problem``."""
    ctx = _Ctx(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    ctx.only(doc, "", _TOP)
    if doc.get("version") != 1:
        raise ctx.fail("version", "must be 1")

    categories: dict[str, Category] = {}
    for name, raw in ctx.table(doc.get("categories", {}), "categories").items():
        key = f"categories.{name}"
        ctx.name(name, key)
        t = ctx.table(raw, key)
        ctx.only(
            t,
            key,
            {
                "fields",
                "content",
                "description",
                "identifiers",
                "retention",
                "store_consent",
                "searchable",
            },
        )
        fields = ctx.names(t.get("fields", []), f"{key}.fields")
        for f in fields:
            ctx.name(f, f"{key}.fields")
        if CONTENT_FIELD in fields:
            raise ctx.fail(f"{key}.fields", f"{CONTENT_FIELD!r} is reserved: use content = true")
        content = t.get("content", False)
        if not isinstance(content, bool):
            raise ctx.fail(f"{key}.content", "must be true or false")
        if content:
            fields = fields | {CONTENT_FIELD}
        if not fields and not content:
            raise ctx.fail(key, "declares no fields and no content: nothing could be stored")
        identifiers = ctx.names(
            t.get("identifiers", []), f"{key}.identifiers", dict.fromkeys(fields), "field"
        )
        retention = _retention(ctx, t.get("retention"), f"{key}.retention")
        store_consent = t.get("store_consent", "")
        if not isinstance(store_consent, str):
            raise ctx.fail(f"{key}.store_consent", "must be the name of a purpose")
        categories[name] = Category(
            name,
            fields,
            content,
            str(t.get("description", "")),
            identifiers,
            retention,
            store_consent,
            _searchable(ctx, t.get("searchable", []), f"{key}.searchable", fields),
        )
    if not categories:
        raise ctx.fail("categories", "at least one category is required")

    purposes: dict[str, Purpose] = {}
    for name, raw in ctx.table(doc.get("purposes", {}), "purposes").items():
        key = f"purposes.{name}"
        ctx.name(name, key)
        t = ctx.table(raw, key)
        ctx.only(
            t,
            key,
            {
                "categories",
                "fields",
                "description",
                "consent_required",
                "deidentified",
                "scrub_text",
                "restriction_exempt",
                "retained_access",
                "reactivation",
                "consent_parties",
            },
        )
        flags = {}
        for flag in (
            "consent_required",
            "deidentified",
            "scrub_text",
            "restriction_exempt",
            "retained_access",
            "reactivation",
        ):
            value = t.get(flag, False)
            if not isinstance(value, bool):
                raise ctx.fail(f"{key}.{flag}", "must be true or false")
            flags[flag] = value
        cats = ctx.names(t.get("categories", []), f"{key}.categories", categories, "category")
        subsets: dict[str, frozenset[str]] = {}
        for cat, fl in ctx.table(t.get("fields", {}), f"{key}.fields").items():
            if cat not in cats:
                raise ctx.fail(f"{key}.fields.{cat}", "category is not in this purpose's categories")
            subsets[cat] = ctx.names(
                fl, f"{key}.fields.{cat}", dict.fromkeys(categories[cat].fields), "field"
            )
        parties = _parties(ctx, t, key)
        if parties:
            if "consent_required" in t and not flags["consent_required"]:
                raise ctx.fail(f"{key}.consent_required", "consent_parties needs consent")
            flags["consent_required"] = True
        purposes[name] = Purpose(
            name, cats, subsets, str(t.get("description", "")), **flags, consent_parties=parties
        )
    for name, category in categories.items():
        _check_store_consent(ctx, category, purposes, f"categories.{name}.store_consent")

    action_names = {a.value: a for a in Action}
    roles: dict[str, Role] = {}
    for name, raw in ctx.table(doc.get("roles", {}), "roles").items():
        key = f"roles.{name}"
        ctx.name(name, key)
        t = ctx.table(raw, key)
        ctx.only(t, key, {"actions", "purposes", "description"})
        acts = ctx.names(t.get("actions", []), f"{key}.actions", action_names, "action")
        allowed = ctx.names(t.get("purposes", []), f"{key}.purposes", purposes, "purpose")
        roles[name] = Role(name, frozenset(action_names[a] for a in acts), allowed)

    principals: dict[str, PrincipalEntry] = {}
    seen_hashes: set[str] = set()
    seen_cns: set[str] = set()
    for name, raw in ctx.table(doc.get("principals", {}), "principals").items():
        key = f"principals.{name}"
        ctx.name(name, key)
        t = ctx.table(raw, key)
        ctx.only(t, key, {"role", "token_sha256", "cert_cn", "description"})
        role = t.get("role")
        if role not in roles:
            raise ctx.fail(f"{key}.role", f"unknown role {role!r}")
        digest = t.get("token_sha256")
        if digest is not None:
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                raise ctx.fail(f"{key}.token_sha256", "must be 64 lower-case hex characters")
            if digest in seen_hashes:
                raise ctx.fail(f"{key}.token_sha256", "the same token is given to two principals")
            seen_hashes.add(digest)
        cert_cn = t.get("cert_cn")
        if cert_cn is not None:
            if not isinstance(cert_cn, str) or not cert_cn or len(cert_cn) > 64:
                raise ctx.fail(f"{key}.cert_cn", "must be a certificate common name (1-64 chars)")
            if cert_cn in seen_cns:
                raise ctx.fail(f"{key}.cert_cn", "the same certificate name is given twice")
            seen_cns.add(cert_cn)
        if digest is None and cert_cn is None:
            raise ctx.fail(key, "needs token_sha256 or cert_cn (or both) to authenticate")
        principals[name] = PrincipalEntry(
            Principal(name, role), bytes.fromhex(digest) if digest else None, cert_cn
        )

    declared = ctx.names(doc.get("events", []), "events")
    for i, event in enumerate(sorted(declared)):
        if not EVENT.fullmatch(event):
            raise ctx.fail(f"events[{i}]", "event names are 1-64 of a-z, 0-9 and _")
    events = declared | {c.retention.event for c in categories.values() if c.retention.event}
    dormancy = _dormancy(ctx, doc.get("dormancy"))
    return Policy(categories, purposes, roles, principals, source, frozenset(events), dormancy)
