"""FindRecords: the records whose searchable field equals a value, found through a blind index.

A field the policy marks ``searchable`` gets, for every record version that has it, a token:
HMAC-SHA-256 under the field's own key of the normalised value (crypto/derive.py). The tokens
are written with the version and deleted with the record, in the same transactions
(storage/sql). A search computes the value's token, looks it up, and decides each record found
like a read of that one field (:meth:`Reads.decide`: role, purpose, the subject's state and
consent), releasing only metadata, audited before anything leaves.

No existence oracle: the rights that depend on no data (the action, the purpose, the field
under the purpose) are checked before any lookup; a record the caller may not read is left out
(its denial audited), so a value whose every match is refused answers exactly like a value that
matches nothing: the same empty page, no page token. Pages are counted in released records, and
the page token is the last record released.
"""

from __future__ import annotations

from collections.abc import Mapping

from vault_service.crypto.derive import blind_index_token
from vault_service.errors import DataLoss, InvalidArgument
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.policy import Action, Category, Policy
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.reads import Reads
from vault_service.service.types import CallContext
from vault_service.storage import AuditRow, RecordMeta, RecordStore

#: the longest value a search accepts (characters; values are field values, so this is generous)
MAX_VALUE = 1024
MAX_PAGE = 100
DEFAULT_PAGE = 50
#: candidates read from the index per query while a page fills
_SCAN = 200


def index_spec(category: Category) -> str:
    """The searchable fields of a category and their normalisations, as a record's index
    remembers them ("email:casefold,phone:exact"; "" when none): a record whose spec differs
    from its category's is re-indexed by :meth:`Search.backfill`."""
    return ",".join(f"{name}:{how}" for name, how in sorted(category.searchable.items()))


def index_tokens(keys: KeyHierarchy, category: Category, fields: Mapping[str, str]) -> tuple[bytes, ...]:
    """The blind index tokens of a version's searchable fields (an empty value is not indexed):
    the one derivation of writes and searches."""
    return tuple(
        blind_index_token(keys.blind_index_key(category.name, name), how, fields[name])
        for name, how in sorted(category.searchable.items())
        if fields.get(name)
    )


class Search:
    """Finds records by a searchable field's value (see the module docstring)."""

    def __init__(
        self,
        access: Access,
        keys: KeyHierarchy,
        store: RecordStore,
        reads: Reads,
        policy: Policy,
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.reads = reads
        self.policy = policy

    def find(
        self,
        call: CallContext,
        category: str,
        field: str,
        value: str,
        purpose: str,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[RecordMeta], str]:
        """A page of the records of ``category`` whose ``field`` equals ``value`` (after the
        field's normalisation) that ``purpose`` may read; returns (metadata, next_page_token)."""
        validate.purpose(self.policy, purpose)
        cat = validate.category(self.policy, category)
        how = cat.searchable.get(field)
        if how is None:
            raise InvalidArgument("field is not searchable (the policy's searchable list)")
        if not value or len(value) > MAX_VALUE:
            raise InvalidArgument(f"value must be 1 to {MAX_VALUE} characters")
        validate.page(page_size, page_token, MAX_PAGE)
        # the rights that depend on no data, before any lookup
        self.access.check(call, self.access.request(call, Action.RECORD_FIND, purpose=purpose))
        self.reads.integrity.check_release()  # a match releases whether the field equals value
        spec = self.policy.purposes[purpose]
        if cat.name not in spec.categories or field not in spec.visible_fields(cat):
            raise self.access.refuse(
                call, Action.RECORD_FIND, "field not permitted for purpose", purpose=purpose
            )
        if spec.scrub_text and field in cat.identifiers:
            # a scrub_text purpose never learns how to reach a person: confirming a guessed
            # e-mail address or phone number would tell it
            raise self.access.refuse(
                call, Action.RECORD_FIND, "identifier not searchable for purpose", purpose=purpose
            )
        token = blind_index_token(self.keys.blind_index_key(cat.name, field), how, value)
        size = page_size or DEFAULT_PAGE
        found, audits, more = self._page(call, cat, field, purpose, token, page_token, size)
        if not audits:
            audits.append(self.access.row(call, Action.RECORD_FIND, "no match", purpose=purpose))
        self.store.append_audits(audits)  # on the record before anything leaves (fail closed)
        return found, found[-1].record_id if more else ""

    def _page(
        self,
        call: CallContext,
        cat: Category,
        field: str,
        purpose: str,
        token: bytes,
        after: str,
        size: int,
    ) -> tuple[list[RecordMeta], list[AuditRow], bool]:
        """Up to ``size`` releasable records after ``after``, their audit rows (a denial for each
        record left out on the way), and whether another releasable one follows."""
        found: list[RecordMeta] = []
        audits: list[AuditRow] = []
        wanted = frozenset({field})
        while True:
            batch = self.store.find_records(token, cat.name, after, _SCAN)
            for record_id in batch:
                stored = self.store.get_record(record_id, grants_for=purpose)
                if stored is None:  # destroyed since the lookup
                    continue
                decision = self.reads.decide(
                    call, Action.RECORD_FIND, purpose, stored, wanted, quiet=True
                )
                if decision.allowed and len(found) == size:
                    return found, audits, True
                ref = stored.meta.subject_ref
                if decision.allowed:
                    found.append(stored.meta)
                audits.append(
                    self.access.row(
                        call,
                        Action.RECORD_FIND,
                        f"found by {field}" if decision.allowed else decision.reason,
                        decision="allow" if decision.allowed else "deny",
                        purpose=purpose,
                        ref=ref,
                        record_id=record_id,
                        category=cat.name,
                        # a search discloses whether the field equals the value: a release
                        # of that field (the breach scope counts it)
                        released=wanted if decision.allowed else None,
                        # a match left out is the search working as documented, not a caller
                        # probing: a search over subjects who did not consent is no alarm
                        watched=False,
                    )
                )
            if len(batch) < _SCAN:
                return found, audits, False
            after = batch[-1]

    # the backfill --------------------------------------------------------------------------------
    def backfill(self, batch: int = 200, limit: int = 5000) -> int:
        """Re-index up to ``limit`` records whose blind index was made for other searchable
        fields than their category's now (records written before a field became searchable,
        after a normalisation changed, or a field stopped being searchable). Their searchable
        fields are decrypted for the token and never leave the process. A separated (dormant)
        subject's records wait for its reactivation, a record whose rows fail authentication
        is skipped (its read is DATA_LOSS anyway). Returns how many were re-indexed: 0 means
        nothing is left to do."""
        done = 0
        for cat in self.policy.categories.values():
            spec, after = index_spec(cat), ""
            while done < limit and (page := self.store.stale_index(cat.name, spec, after, batch)):
                after = page[-1]
                for record_id in page:
                    done += self._reindex(cat, spec, record_id)
        return done

    def _reindex(self, cat: Category, spec: str, record_id: str) -> int:
        stored = self.store.get_record(record_id)
        if stored is None:
            return 0
        names = frozenset(cat.searchable) & frozenset(stored.payloads)
        try:
            fields = self.reads.decrypt_fields(stored, names) if names else {}
        except DataLoss:
            return 0
        tokens = index_tokens(self.keys, cat, fields)
        return int(self.store.replace_tokens(record_id, stored.meta.version, spec, tokens))
