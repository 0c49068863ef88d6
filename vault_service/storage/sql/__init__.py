"""The SQL record store: the queries of SQLite and PostgreSQL, written once.

:class:`SqlRecordStore` implements :class:`~vault_service.storage.records.RecordStore` in the SQL
both engines share; the dialect subclasses (:mod:`vault_service.storage.sqlite`,
:mod:`vault_service.storage.postgres`) provide connections, transactions, vendor-error mapping and
the fragments that differ (hex of a blob, row locks). The queries are split by table group, one
mixin a module, so that each capability is found by its file name; a transaction still spans
whatever tables its operation needs (an erasure checks the holds and appends to the audit chain
in the transaction that deletes the key):

- :mod:`.base`: the connection protocol, the dialect hooks and fragments, what a live record is,
  and the helpers the groups provide to each other (declared there once);
- :mod:`.records`: records, versions, payloads, data keys, idempotency keys;
- :mod:`.record_reads`: the reads of live records (any number in three statements);
- :mod:`.subjects`: subjects, subject keys, state and dormancy, consent grants, erasure;
- :mod:`.holds`: legal holds, pending deletions, the records retention makes due;
- :mod:`.shares`: shares, share keys, business events;
- :mod:`.audit`: the audit chain;
- :mod:`.tree`: the audit trail's Merkle tree (subtree hashes);
- :mod:`.keys`: service keys, root-key rotation, root-version states;
- :mod:`.aggregates`: counts for the metrics and the compliance report;
- :mod:`.leases`: job leases between replicas.
"""

from __future__ import annotations

from vault_service.storage.sql.aggregates import SqlAggregates
from vault_service.storage.sql.audit import SqlAudit
from vault_service.storage.sql.base import Connection
from vault_service.storage.sql.holds import SqlHolds
from vault_service.storage.sql.keys import SqlKeys
from vault_service.storage.sql.leases import SqlLeases
from vault_service.storage.sql.record_reads import SqlRecordReads
from vault_service.storage.sql.records import SqlRecords
from vault_service.storage.sql.search import SqlSearch
from vault_service.storage.sql.shares import SqlShares
from vault_service.storage.sql.subjects import SqlSubjects
from vault_service.storage.sql.tree import SqlTree

__all__ = ["Connection", "SqlRecordStore"]


class SqlRecordStore(
    SqlRecords,
    SqlRecordReads,
    SqlSearch,
    SqlSubjects,
    SqlHolds,
    SqlShares,
    SqlAudit,
    SqlTree,
    SqlKeys,
    SqlAggregates,
    SqlLeases,
):
    """The queries of every SQL record store, written once in the SQL that SQLite and PostgreSQL
    share. A dialect supplies connections and transactions, and the few fragments that differ.

    Concurrency: SQLite serializes writers (``BEGIN IMMEDIATE``), so the lock fragments are empty
    there. PostgreSQL runs writers concurrently at READ COMMITTED, so each read-then-write takes
    the row lock that makes it race-free (:attr:`_FOR_UPDATE`, :attr:`_FOR_SHARE`), workers
    skip rows another worker holds (:attr:`_SKIP_LOCKED`), and the audit chain and idempotency
    keys are serialized by :meth:`_serialize` (calls' audit entries take no such lock: the
    sequencer orders them, storage/sql/audit_pending.py).
    """
