"""Time-limited, field-limited, purpose-bound shares to a named recipient (a clinic).

A share discloses chosen records of one subject, only some fields, under a purpose, to one
recipient principal, until an absolute time and/or a period after a business event of the subject
("6 months after match_completed"). Creating one needs the subject's active consent grant for that
purpose and recipient; reading needs it still.

Keys, so that a share cannot be revived or widened by editing the database:

- each share has its own key, wrapped by the subject key (context: subject, share);
- the share's terms (records, fields, recipient, purpose, expiry rule) are sealed under that key;
  the table's columns only serve listing. A read opens the sealed terms and refuses when the
  columns disagree with them;
- revoking deletes the key in the same transaction; the sweeper deletes expired shares' keys and
  rows; erasing the subject destroys the subject key that wraps every share key;
- event times carry a keyed MAC, so an edited ``match_completed`` does not extend a share.

Reads stream: every message (a record, or a chunk of its content) is released only after the share
has been checked again against the database and the server clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vault_service import metrics
from vault_service.crypto import DataKey, open_payload, seal_payload, unwrap_key, wrap_key
from vault_service.crypto.context import Context
from vault_service.errors import (
    IntegrityError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from vault_service.ids import is_record_id, new_record_id
from vault_service.policy import Action
from vault_service.policy.model import CONTENT_FIELD, PrincipalEntry, Purpose
from vault_service.storage import AuditRow, SubjectState
from vault_service.storage.shares import EventRow, ShareRow

if TYPE_CHECKING:
    from vault_service.service import CallContext, RecordView, VaultService

MAX_SHARE_RECORDS = 100
CONTENT_PIECE = 64 * 1024
EVENT_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class ShareTerms:
    """What a share discloses; sealed under the share key (authoritative)."""

    share_id: str
    recipient: str
    purpose: str
    records: tuple[str, ...]
    fields: frozenset[str]
    expires_at: float | None
    event_name: str
    event_period: float | None

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "share_id": self.share_id,
                "recipient": self.recipient,
                "purpose": self.purpose,
                "records": list(self.records),
                "fields": sorted(self.fields),
                "expires_at": self.expires_at,
                "event_name": self.event_name,
                "event_period": self.event_period,
            },
            sort_keys=True,
        ).encode()

    @staticmethod
    def from_bytes(data: bytes) -> ShareTerms:
        d = json.loads(data)
        return ShareTerms(
            d["share_id"],
            d["recipient"],
            d["purpose"],
            tuple(d["records"]),
            frozenset(d["fields"]),
            d["expires_at"],
            d["event_name"],
            d["event_period"],
        )

    def matches(self, row: ShareRow) -> bool:
        """Whether the listing columns still say what the sealed terms say."""
        return (
            row.share_id == self.share_id
            and row.recipient == self.recipient
            and row.purpose == self.purpose
            and row.expires_at == self.expires_at
            and row.event_name == self.event_name
            and row.event_period == self.event_period
            and frozenset(row.fields) == self.fields
            and row.record_count == len(self.records)
        )


@dataclass(frozen=True)
class ShareItem:
    """One streamed message of a share read: a record's fields, or a piece of its content."""

    view: RecordView | None = None
    record_id: str = ""
    offset: int = 0
    content: bytes = b""


# The audited reason a recipient's read is refused, per verdict of ShareOperations._judge.
_READ_DENIALS = {
    "revoked": "share revoked or destroyed",
    "subject erased": "subject erased",
    "tampered": "share tampered",
    "expired": "share expired",
}


def _share_key_context(subject_ref: bytes, share_id: str) -> Context:
    return Context("share-key", {"subject": subject_ref.hex(), "share": share_id})


def _terms_context(subject_ref: bytes, share_id: str) -> Context:
    return Context("share-terms", {"subject": subject_ref.hex(), "share": share_id})


class ShareOperations:
    """Share operations of a :class:`~vault_service.service.VaultService` (``vault.shares``)."""

    def __init__(self, vault: VaultService) -> None:
        self._v = vault

    # business events ---------------------------------------------------------------------------
    def _event_mac(self, subject_ref: bytes, name: str, at: float) -> bytes:
        return hmac.new(
            self._v._index_key.unsafe_bytes(),
            b"event/v1\x00" + subject_ref + b"\x00" + name.encode() + b"\x00" + repr(at).encode(),
            hashlib.sha256,
        ).digest()

    def record_event(
        self, call: CallContext, subject_id: str, name: str, at: float | None = None
    ) -> bool:
        """Record a business event of a subject (the first occurrence stands); drives event-bound
        share expiry and retention rules. Returns False if it was already recorded."""
        self._v._check_subject_id(subject_id)
        if not name or len(name) > 64 or not set(name) <= EVENT_NAME_CHARS:
            raise InvalidArgument("event name: 1-64 of a-z, 0-9 and _")
        when = self._v.clock.now() if at is None else at
        if when > self._v.clock.now():
            raise InvalidArgument("an event cannot be recorded in the future")
        ref = self._v.subject_ref(subject_id)
        self._v._authorize(call, self._v._request(call, Action.EVENT_RECORD), ref=ref)
        return self._v.store.record_event(
            ref,
            EventRow(name, when, self._event_mac(ref, name, when)),
            self._v._audit(call, Action.EVENT_RECORD, "allow", f"event {name}", ref=ref),
        )

    def event_time(self, subject_ref: bytes, name: str) -> float | None:
        """When the event happened (None if not recorded). An edited event (its MAC fails) raises
        IntegrityError and is logged as a security event: callers fail closed."""
        event = self._v.store.get_event(subject_ref, name)
        if event is None:
            return None
        if not hmac.compare_digest(event.mac, self._event_mac(subject_ref, name, event.at)):
            self._v._security_event("event_tampered")
            raise IntegrityError()
        return event.at

    def share_expiry(self, subject_ref: bytes, terms: ShareTerms) -> float | None:
        """The moment the share ends: the earlier of its absolute expiry and event + period
        (None while neither is known). A tampered event ends the share at once (0.0)."""
        ends = [terms.expires_at] if terms.expires_at is not None else []
        if terms.event_name and terms.event_period is not None:
            try:
                at = self.event_time(subject_ref, terms.event_name)
            except IntegrityError:
                return 0.0
            if at is not None:
                ends.append(at + terms.event_period)
        return min(ends) if ends else None

    # create, revoke, list ----------------------------------------------------------------------
    def _check_share_request(
        self,
        subject_id: str,
        recipient: str,
        purpose: str,
        record_ids: Sequence[str],
        fields: Sequence[str],
        expires_at: float | None,
        event_name: str,
        event_period: float | None,
    ) -> tuple[Purpose, PrincipalEntry, float]:
        """INVALID_ARGUMENT for a malformed share request; the purpose, recipient and now."""
        self._v._check_subject_id(subject_id)
        spec = self._v.policy.purposes.get(purpose)
        entry = self._v.policy.principals.get(recipient)
        if spec is None:
            raise InvalidArgument("unknown purpose")
        if entry is None:
            raise InvalidArgument("unknown recipient principal")
        role = self._v.policy.roles[entry.principal.role]
        if Action.SHARE_READ not in role.actions or purpose not in role.purposes:
            raise InvalidArgument("the recipient's role cannot read shares for this purpose")
        if (
            not 1 <= len(record_ids) <= MAX_SHARE_RECORDS
            or len(set(record_ids)) != len(record_ids)
            or not all(is_record_id(r) for r in record_ids)
        ):
            raise InvalidArgument(f"1 to {MAX_SHARE_RECORDS} distinct, well-formed record ids")
        if not fields:
            raise InvalidArgument("a share discloses at least one field")
        now = self._v.clock.now()
        if expires_at is None and not event_name:
            raise InvalidArgument("a share needs expires_at and/or event_name with event_period")
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        if bool(event_name) != (event_period is not None) or (
            event_period is not None and event_period <= 0
        ):
            raise InvalidArgument("event_name and a positive event_period go together")
        return spec, entry, now

    def create_share(
        self,
        call: CallContext,
        subject_id: str,
        recipient: str,
        purpose: str,
        record_ids: Sequence[str],
        fields: Sequence[str],
        expires_at: float | None = None,
        event_name: str = "",
        event_period: float | None = None,
    ) -> ShareRow:
        """Share records of a subject with ``recipient`` (see the module docstring)."""
        spec, entry, now = self._check_share_request(
            subject_id, recipient, purpose, record_ids, fields, expires_at, event_name, event_period
        )
        ref = self._v.subject_ref(subject_id)
        self._v._authorize(call, self._v._request(call, Action.SHARE_CREATE), ref=ref)
        if self._v.store.subject_state(ref) is SubjectState.RESTRICTED:
            self._v.store.append_audit(
                self._v._audit(
                    call, Action.SHARE_CREATE, "deny", "subject restricted", purpose=purpose, ref=ref
                )
            )
            raise PermissionDenied()
        wanted = frozenset(fields)
        visible: set[str] = set()
        grants = self._v.store.subject_grants(ref, purpose)
        for record_id in record_ids:
            meta = self._v.store.get_meta(record_id)
            if meta is None or meta.subject_ref != ref:
                raise NotFound()
            category = self._v.policy.categories[meta.category]
            if category.name not in spec.categories:
                raise InvalidArgument("a record's category is not part of the purpose")
            visible |= spec.visible_fields(category)
            if not any(
                g.covers(entry.principal) and g.active_at(now) and category.name in g.categories
                for g in grants
            ):
                self._v.store.append_audit(
                    self._v._audit(
                        call, Action.SHARE_CREATE, "deny", "no consent", purpose=purpose, ref=ref
                    )
                )
                raise PermissionDenied()
        if not wanted <= visible:
            raise InvalidArgument("a field is not disclosed under this purpose")
        share_id = new_record_id(now)
        terms = ShareTerms(
            share_id, recipient, purpose, tuple(record_ids), wanted, expires_at, event_name, event_period
        )
        wrapped_subject = self._v.store.get_subject_key(ref)
        if wrapped_subject is None:
            raise NotFound()
        subject_key = self._v._subject_key(ref, wrapped_subject)
        share_key = DataKey.generate()
        sealed = seal_payload(share_key, _terms_context(ref, share_id), terms.to_bytes())
        wrapped = wrap_key(subject_key, share_key, _share_key_context(ref, share_id))
        share_key.destroy()
        row = ShareRow(
            share_id,
            ref,
            recipient,
            purpose,
            len(record_ids),
            tuple(sorted(wanted)),
            expires_at,
            event_name,
            event_period,
            call.principal.name,
            now,
            None,
            sealed,
        )
        self._v.store.insert_share(
            row,
            wrapped,
            self._v._audit(
                call,
                Action.SHARE_CREATE,
                "allow",
                f"share {share_id} to {recipient}: {','.join(sorted(wanted))}",
                purpose=purpose,
                ref=ref,
            ),
        )
        return row

    def revoke_share(self, call: CallContext, share_id: str) -> ShareRow:
        """End a share now: its key is destroyed in the same transaction."""
        if not is_record_id(share_id):
            raise InvalidArgument("share_id is malformed")
        self._v._authorize(call, self._v._request(call, Action.SHARE_REVOKE))
        row = self._v.store.revoke_share(
            share_id,
            self._v.clock.now(),
            self._v._audit(call, Action.SHARE_REVOKE, "allow", f"share {share_id}"),
        )
        if row is None:
            raise NotFound()
        return row

    def list_shares(self, call: CallContext, subject_id: str) -> list[ShareRow]:
        """A subject's shares (metadata only)."""
        self._v._check_subject_id(subject_id)
        ref = self._v.subject_ref(subject_id)
        self._v._authorize(call, self._v._request(call, Action.SHARE_LIST), ref=ref)
        return self._v.store.list_shares(subject_ref=ref)

    def received_shares(self, call: CallContext) -> list[ShareRow]:
        """The shares the calling principal has received (metadata only)."""
        self._v._authorize(call, self._v._request(call, Action.SHARE_RECEIVED))
        return self._v.store.list_shares(recipient=call.principal.name)

    # reading -----------------------------------------------------------------------------------
    def _judge(self, row: ShareRow) -> tuple[str, ShareTerms | None]:
        """Whether a share is live right now (server time), judged by its sealed terms, whatever
        its columns say: ("", terms) if it is, else why not ("revoked", "subject erased",
        "tampered" or "expired") and no terms."""
        if row.revoked_at is not None or row.share_key is None:
            return "revoked", None
        if row.subject_key is None or row.subject_state == SubjectState.ERASED.value:
            return "subject erased", None
        try:
            subject_key = self._v._subject_key(row.subject_ref, row.subject_key)
            share_key = unwrap_key(
                subject_key, row.share_key, _share_key_context(row.subject_ref, row.share_id), DataKey
            )
            terms = ShareTerms.from_bytes(
                open_payload(share_key, _terms_context(row.subject_ref, row.share_id), row.sealed_terms)
            )
        except (IntegrityError, ValueError, KeyError):
            return "tampered", None
        if not terms.matches(row):
            return "tampered", None
        ends = self.share_expiry(row.subject_ref, terms)
        if ends is not None and self._v.clock.now() >= ends:
            return "expired", None
        return "", terms

    def _open_share(self, call: CallContext, share_id: str) -> tuple[ShareRow, ShareTerms]:
        """The share, if it is live for this caller right now (server time); else denied. A share
        found tampered with or expired loses its key at once, not at the next sweep."""
        row = self._v.store.get_share(share_id)
        if row is None or row.recipient != call.principal.name:
            reason, terms = "not a share of this recipient", None
        else:
            verdict, terms = self._judge(row)
            reason = _READ_DENIALS.get(verdict, "")
            if terms is None:
                metrics.SHARE_READS.labels(verdict.replace(" ", "_")).inc()
            if verdict in ("tampered", "expired"):
                self._v._security_event(
                    "share_tampered" if verdict == "tampered" else "expired_share_read"
                )
                self._v.store.revoke_share(share_id, self._v.clock.now(), None)
        if terms is None or row is None:
            if row is None or row.recipient != call.principal.name:
                metrics.SHARE_READS.labels("not_recipient").inc()
            self._v.store.append_audit(
                self._v._audit(call, Action.SHARE_READ, "deny", reason, record_id=share_id)
            )
            raise PermissionDenied()
        return row, terms

    def read_share(self, call: CallContext, share_id: str) -> Iterator[ShareItem]:
        """Stream what the share discloses: per record its fields, then its content in pieces.
        The share is checked again before every message."""
        if not is_record_id(share_id):
            raise InvalidArgument("share_id is malformed")
        role = self._v.policy.roles.get(call.principal.role)
        if role is None or Action.SHARE_READ not in role.actions:
            self._v.store.append_audit(
                self._v._audit(
                    call, Action.SHARE_READ, "deny", "action not permitted for role", record_id=share_id
                )
            )
            raise PermissionDenied()
        row, terms = self._open_share(call, share_id)
        metrics.SHARE_READS.labels("served").inc()
        self._v._authorize(
            call,
            self._v._request(call, Action.SHARE_READ, purpose=terms.purpose),
            ref=row.subject_ref,
            record_id=share_id,
        )
        for record_id in terms.records:
            self._open_share(call, share_id)
            stored = self._v.store.get_record(record_id, grants_for=terms.purpose)
            if stored is None or stored.meta.subject_ref != row.subject_ref:
                continue  # deleted since the share was made
            category = self._v.policy.categories[stored.meta.category]
            wanted = terms.fields & self._v.policy.purposes[terms.purpose].visible_fields(category)
            decision = self._v._authorize_read(
                call, Action.SHARE_READ, terms.purpose, stored, frozenset(wanted)
            )
            view = self._v._release(
                call,
                Action.SHARE_READ,
                terms.purpose,
                stored,
                decision,
                include_content=False,
                reason=f"share {share_id}: {','.join(sorted(wanted)) or '-'}",
            )
            yield ShareItem(view=view, record_id=record_id)
            if CONTENT_FIELD in decision.fields and stored.blob_ref:
                for offset, piece in self._v._content_pieces(stored):
                    self._open_share(call, share_id)
                    yield ShareItem(record_id=record_id, offset=offset, content=piece)

    # sweeping ----------------------------------------------------------------------------------
    def sweep(self, batch: int = 500) -> int:
        """Destroy the keys and rows of every share that is revoked, expired (by its sealed terms,
        whatever its columns say), tampered with, or whose subject was erased. A job run,
        audited. Returns how many shares went."""
        now = self._v.clock.now()
        doomed: list[str] = []
        after = ""
        while True:
            page = self._v.store.share_ids(after, batch)
            for share_id in page:
                row = self._v.store.get_share(share_id)
                if row is not None and self._judge(row)[0]:
                    doomed.append(share_id)
            if len(page) < batch:
                break
            after = page[-1]
        done = self._v.store.purge_shares(doomed)
        if done:
            self._v.store.append_audit(
                AuditRow(
                    at=now,
                    principal="vault-service",
                    action="job.share_sweep",
                    decision="allow",
                    reason=f"{done} shares destroyed",
                )
            )
        return done
