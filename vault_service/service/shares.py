"""Time-limited, field-limited, purpose-bound shares to a named recipient (a clinic).

A share discloses chosen records of one subject, only some fields, under a purpose, to one
recipient principal, until an absolute time and/or a period after a business event the policy
declares ("6 months after match_completed"): every share has a reachable end. Creating one needs
the subject's active consent grant for that purpose and recipient; reading needs it still.

Keys, so that a share cannot be revived or widened by editing the database:

- each share has its own key, wrapped by the subject key (context: subject, share);
- the share's terms (records, fields, recipient, purpose, expiry rule) are sealed under that key;
  the table's columns only serve listing. A read opens the sealed terms and refuses when the
  columns disagree with them;
- revoking deletes the key (through the shredder: ledgered, so a restored backup does not revive
  it); the sweeper deletes expired shares' keys and rows; erasing the subject destroys the subject
  key that wraps every share key;
- event times carry a keyed MAC, so an edited ``match_completed`` does not extend a share.

Reads stream through the one release step: every message (a record, or a piece of its content)
is sent only after the share was checked again against the database and the server clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vault_service import metrics, security_events
from vault_service.audit.model import job_row
from vault_service.clock import Clock
from vault_service.crypto import DataKey, open_payload, seal_payload, unwrap_key, wrap_key
from vault_service.crypto.context import share_key_context, share_terms_context
from vault_service.crypto.derive import subject_ref
from vault_service.errors import IntegrityError, InvalidArgument, NotFound
from vault_service.ids import is_record_id, new_record_id
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.events import BusinessEvents
from vault_service.lifecycle.shredding import Shredder
from vault_service.policy import Action, Policy
from vault_service.policy.decide import consented, state_denial
from vault_service.policy.model import CONTENT_FIELD, PrincipalEntry, Purpose
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.reads import Reads
from vault_service.service.types import Ask, CallContext, RecordView
from vault_service.storage import RecordStore, SubjectState
from vault_service.storage.rows import ShareRow

MAX_SHARE_RECORDS = 100
#: content is streamed to a recipient in pieces this big, the share checked again before each
CONTENT_PIECE = 64 * 1024


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


#: the audited reason a recipient's read is refused, per verdict of Shares.judge
_READ_DENIALS = {
    "revoked": "share revoked or destroyed",
    "subject erased": "subject erased",
    "subject dormant": "subject dormant",
    "tampered": "share tampered",
    "expired": "share expired",
}


class Shares:
    """Share operations (see the module docstring)."""

    def __init__(
        self,
        access: Access,
        keys: KeyHierarchy,
        store: RecordStore,
        reads: Reads,
        events: BusinessEvents,
        shredder: Shredder,
        policy: Policy,
        clock: Clock,
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.reads = reads
        self.events = events
        self.shredder = shredder
        self.policy = policy
        self.clock = clock

    def share_expiry(self, ref: bytes, terms: ShareTerms) -> float | None:
        """The moment the share ends: the earlier of its absolute expiry and event + period
        (None while neither is known). A tampered event ends the share at once (0.0)."""
        ends = [terms.expires_at] if terms.expires_at is not None else []
        if terms.event_name and terms.event_period is not None:
            try:
                at = self.events.time_of(ref, terms.event_name)
            except IntegrityError:
                return 0.0
            if at is not None:
                ends.append(at + terms.event_period)
        return min(ends) if ends else None

    # create, revoke, list ------------------------------------------------------------------------
    def _check_request(
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
        """INVALID_ARGUMENT for a malformed share request or one without a reachable end; the
        purpose, recipient and now."""
        validate.subject_id(subject_id)
        spec = self.policy.purposes.get(purpose)
        entry = self.policy.principals.get(recipient)
        if spec is None:
            raise InvalidArgument("unknown purpose")
        if entry is None:
            raise InvalidArgument("unknown recipient principal")
        role = self.policy.roles[entry.principal.role]
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
        now = self.clock.now()
        if expires_at is None and not event_name:
            raise InvalidArgument("a share needs expires_at and/or event_name with event_period")
        if expires_at is not None and validate.time(expires_at, "expires_at") <= now:
            raise InvalidArgument("expires_at must be in the future")
        if bool(event_name) != (event_period is not None):
            raise InvalidArgument("event_name and a positive event_period go together")
        if event_period is not None:
            validate.duration(event_period, "event_period")
        if event_name:
            validate.event_name(event_name)
            if event_name not in self.policy.events:
                raise InvalidArgument("event_name is not an event the policy declares")
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
        spec, entry, now = self._check_request(
            subject_id, recipient, purpose, record_ids, fields, expires_at, event_name, event_period
        )
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.SHARE_CREATE, ref=ref)
        if self.store.subject_state(ref) is SubjectState.RESTRICTED:
            raise self.access.refuse(
                call, Action.SHARE_CREATE, "subject restricted", purpose=purpose, ref=ref
            )
        wanted = frozenset(fields)
        visible: set[str] = set()
        grants = self.store.subject_grants(ref, purpose)
        for record_id in record_ids:
            meta = self.store.get_meta(record_id)
            if meta is None or meta.subject_ref != ref:
                raise NotFound()
            category = self.policy.categories[meta.category]
            if category.name not in spec.categories:
                raise InvalidArgument("a record's category is not part of the purpose")
            visible |= spec.visible_fields(category)
            denial = state_denial(
                spec, erased=False, restricted=False, dormant=False, record_restricted=meta.restricted
            )
            if denial:
                raise self.access.refuse(call, Action.SHARE_CREATE, denial, purpose=purpose, ref=ref)
            if not consented(grants, entry.principal, spec, now, category.name):
                raise self.access.refuse(
                    call, Action.SHARE_CREATE, "no consent", purpose=purpose, ref=ref
                )
        if not wanted <= visible:
            raise InvalidArgument("a field is not disclosed under this purpose")
        share_id = new_record_id(now)
        terms = ShareTerms(
            share_id, recipient, purpose, tuple(record_ids), wanted, expires_at, event_name, event_period
        )
        wrapped_subject = self.store.get_subject_key(ref)
        if wrapped_subject is None and self.store.get_separated_key(ref) is not None:
            raise self.access.refuse(
                call, Action.SHARE_CREATE, "subject dormant", purpose=purpose, ref=ref
            )
        if wrapped_subject is None:
            raise NotFound()
        subject_key = self.keys.subject_key(ref, wrapped_subject)
        share_key = DataKey.generate()
        sealed = seal_payload(share_key, share_terms_context(ref, share_id), terms.to_bytes())
        wrapped = wrap_key(subject_key, share_key, share_key_context(ref, share_id))
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
        reason = f"share {share_id} to {recipient}: {','.join(sorted(wanted))}"
        audit = self.access.row(call, Action.SHARE_CREATE, reason, purpose=purpose, ref=ref)
        self.store.insert_share(row, wrapped, audit)
        return row

    def revoke_share(self, call: CallContext, share_id: str) -> ShareRow:
        """End a share now: its key is destroyed."""
        validate.record_id(share_id, "share_id")
        self.access.allow(call, Action.SHARE_REVOKE)
        row = self.store.get_share(share_id)
        if row is None:
            raise NotFound()
        audit = self.access.row(call, Action.SHARE_REVOKE, f"share {share_id}")
        done = self.shredder.revoke_share(share_id, row.subject_ref, audit, "revoked")
        if done is None:
            raise NotFound()
        return done

    def list_shares(self, call: CallContext, subject_id: str) -> list[ShareRow]:
        """A subject's shares (metadata only)."""
        validate.subject_id(subject_id)
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.SHARE_LIST, ref=ref)
        return self.store.list_shares(subject_ref=ref)

    def received_shares(self, call: CallContext) -> list[ShareRow]:
        """The shares the calling principal has received (metadata only)."""
        self.access.allow(call, Action.SHARE_RECEIVED)
        return self.store.list_shares(recipient=call.principal.name)

    # reading -------------------------------------------------------------------------------------
    def judge(self, row: ShareRow) -> tuple[str, ShareTerms | None]:
        """Whether a share is live right now (server time), judged by its sealed terms, whatever
        its columns say: ("", terms) if it is, else why not ("revoked", "subject erased",
        "subject dormant", "tampered" or "expired") and no terms. A subject made dormant under a
        separating rule ends its shares: its key is no share's to open any more."""
        if row.revoked_at is not None or row.share_key is None:
            return "revoked", None
        if row.subject_key is None and row.subject_state == SubjectState.DORMANT.value:
            return "subject dormant", None
        if row.subject_key is None or row.subject_state == SubjectState.ERASED.value:
            return "subject erased", None
        ref = row.subject_ref
        try:
            subject_key = self.keys.subject_key(ref, row.subject_key)
            ctx = share_key_context(ref, row.share_id)
            share_key = unwrap_key(subject_key, row.share_key, ctx, DataKey)
            terms = ShareTerms.from_bytes(
                open_payload(share_key, share_terms_context(ref, row.share_id), row.sealed_terms)
            )
        except (IntegrityError, ValueError, KeyError):
            return "tampered", None
        if not terms.matches(row):
            return "tampered", None
        ends = self.share_expiry(ref, terms)
        if ends is not None and self.clock.now() >= ends:
            return "expired", None
        return "", terms

    def _open(self, call: CallContext, share_id: str) -> tuple[ShareRow, ShareTerms]:
        """The share, if it is live for this caller right now; else denied. A share found
        tampered with or expired loses its key at once, not at the next sweep."""
        row = self.store.get_share(share_id)
        terms = None
        if row is None or row.recipient != call.principal.name:
            reason = "not a share of this recipient"
            metrics.SHARE_READS.labels("not_recipient").inc()
        else:
            verdict, terms = self.judge(row)
            reason = _READ_DENIALS.get(verdict, "")
            if terms is None:
                metrics.SHARE_READS.labels(verdict.replace(" ", "_")).inc()
            if verdict in ("tampered", "expired"):
                security_events.emit("share_tampered" if verdict == "tampered" else "expired_share_read")
                self.shredder.revoke_share(share_id, row.subject_ref, None, verdict)
        if terms is None or row is None:
            raise self.access.refuse(call, Action.SHARE_READ, reason, record_id=share_id)
        return row, terms

    def read_share(self, call: CallContext, share_id: str) -> Iterator[ShareItem]:
        """Stream what the share discloses: per record its fields, then its content in pieces.
        The share is checked again before every message."""
        validate.record_id(share_id, "share_id")
        role = self.policy.roles.get(call.principal.role)
        if role is None or Action.SHARE_READ not in role.actions:
            raise self.access.refuse(
                call, Action.SHARE_READ, "action not permitted for role", record_id=share_id
            )
        row, terms = self._open(call, share_id)
        request = self.access.request(call, Action.SHARE_READ, purpose=terms.purpose)
        self.access.check(call, request, ref=row.subject_ref, record_id=share_id)
        # reading needs the consent still, and a subject state that allows the purpose, even
        # if nothing would be released (every record of the share deleted since)
        state = self.store.subject_state(row.subject_ref)
        purpose = self.policy.purposes.get(terms.purpose)
        denial = (
            "unknown purpose"
            if purpose is None
            else state_denial(
                purpose,
                erased=state is SubjectState.ERASED,
                restricted=state is SubjectState.RESTRICTED,
                dormant=state is SubjectState.DORMANT,
            )
        )
        grants = self.store.subject_grants(row.subject_ref, terms.purpose)
        if (
            not denial
            and purpose is not None
            and not consented(grants, call.principal, purpose, self.clock.now())
        ):
            denial = "no consent"
        if denial:
            raise self.access.refuse(
                call, Action.SHARE_READ, denial, purpose=terms.purpose, record_id=share_id
            )
        metrics.SHARE_READS.labels("served").inc()
        for record_id in terms.records:
            self._open(call, share_id)
            stored = self.store.get_record(record_id, grants_for=terms.purpose)
            if stored is None or stored.meta.subject_ref != row.subject_ref:
                continue  # deleted since the share was made
            category = self.policy.categories[stored.meta.category]
            wanted = terms.fields & self.policy.purposes[terms.purpose].visible_fields(category)
            ask = Ask(
                fields=frozenset(wanted - {CONTENT_FIELD}),
                stream=CONTENT_FIELD in wanted and stored.blob_ref is not None,
                piece=CONTENT_PIECE,
            )
            decision = self.reads.decide(
                call, Action.SHARE_READ, terms.purpose, stored, ask.wanted(), quiet=True
            )
            if not decision.allowed:  # e.g. a record restricted since: left out, on the record
                self.store.append_audit(
                    self.access.row(
                        call,
                        Action.SHARE_READ,
                        decision.reason,
                        decision="deny",
                        purpose=terms.purpose,
                        ref=row.subject_ref,
                        record_id=record_id,
                        category=stored.meta.category,
                    )
                )
                continue
            reason = f"share {share_id}: {','.join(sorted(wanted)) or '-'}"
            released = self.reads.release(
                call, Action.SHARE_READ, terms.purpose, stored, decision, ask, reason
            )
            yield ShareItem(view=released.view, record_id=record_id)
            if released.pieces is not None:
                for offset, piece in released.pieces:
                    self._open(call, share_id)
                    yield ShareItem(record_id=record_id, offset=offset, content=piece)

    # sweeping ------------------------------------------------------------------------------------
    def sweep(self, batch: int = 500) -> int:
        """Destroy the keys and rows of every share that is revoked, expired (by its sealed
        terms), tampered with, or whose subject was erased or separated (dormant). A job run,
        audited. Returns how many shares went."""
        doomed: list[tuple[str, bytes]] = []
        after = ""
        while True:
            page = self.store.share_ids(after, batch)
            for share_id in page:
                row = self.store.get_share(share_id)
                if row is not None and self.judge(row)[0]:
                    doomed.append((share_id, row.subject_ref))
            if len(page) < batch:
                break
            after = page[-1]
        if doomed:
            self.shredder.shares(doomed, "share sweep")
        done = self.store.purge_shares([sid for sid, _ in doomed])
        if done:
            self.store.append_audit(
                job_row("job.share_sweep", f"{done} shares destroyed", self.clock.now())
            )
        return done
