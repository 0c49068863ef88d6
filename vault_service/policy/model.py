"""The policy model: categories, purposes, roles and principals, as frozen dataclasses.

A policy is loaded once from a TOML file (:mod:`.loader`) and consulted by :func:`.decide.decide`
for every request. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Action(enum.Enum):
    """Every operation an RPC can perform. Roles list the actions they may take (deny by default)."""

    RECORD_PUT = "record.put"
    RECORD_GET = "record.get"
    RECORD_LIST = "record.list"
    RECORD_UPDATE = "record.update"
    RECORD_DELETE = "record.delete"
    SUBJECT_ERASE = "subject.erase"
    KEYS_STATUS = "keys.status"
    AUDIT_QUERY = "audit.query"


#: The pseudo-field that stands for a record's binary content in purposes and field subsets.
CONTENT_FIELD = "content"

#: Actions that release plaintext; only these need a purpose.
READ_ACTIONS = frozenset({Action.RECORD_GET})


@dataclass(frozen=True)
class Category:
    """A kind of record (concern_text, face_photo ...): its declared fields and whether it may
    carry a binary content object. With ``content`` the pseudo-field "content" is among
    ``fields``, so purposes grant it like any other field."""

    name: str
    fields: frozenset[str]
    content: bool = False
    description: str = ""


@dataclass(frozen=True)
class Purpose:
    """Why a caller reads: which categories, and optionally which fields of each, it may see."""

    name: str
    categories: frozenset[str]
    #: per category, the visible fields; a category absent here shows all its declared fields
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    description: str = ""

    def visible_fields(self, category: Category) -> frozenset[str]:
        """The fields of ``category`` this purpose may see."""
        return self.fields.get(category.name, category.fields)


@dataclass(frozen=True)
class Role:
    """A set of allowed actions and the purposes under which the role may read."""

    name: str
    actions: frozenset[Action]
    purposes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: str


@dataclass(frozen=True)
class PrincipalEntry:
    """A principal as declared in the policy, with its token's SHA-256 (never the token)."""

    principal: Principal
    token_sha256: bytes | None = None


@dataclass(frozen=True)
class Policy:
    """The whole validated policy."""

    categories: Mapping[str, Category]
    purposes: Mapping[str, Purpose]
    roles: Mapping[str, Role]
    principals: Mapping[str, PrincipalEntry]
    source: str = "<policy>"

    def with_principal(self, entry: PrincipalEntry) -> Policy:
        """A copy with one more principal (the development token of ``make run``)."""
        if entry.principal.role not in self.roles:
            raise ValueError(f"unknown role {entry.principal.role!r}")
        return Policy(
            self.categories,
            self.purposes,
            self.roles,
            {**self.principals, entry.principal.name: entry},
            self.source,
        )
