"""Schema migrations, shared by every SQL record store. Append only: never edit a shipped step.

Each step is (version, statements), written in SQLite's type names; the PostgreSQL store translates
them (BLOB -> BYTEA, REAL -> DOUBLE PRECISION, INTEGER -> BIGINT: see storage/postgres.py).
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            # Service-level keys (the subject index key), wrapped by the key provider.
            "CREATE TABLE service_keys ("
            " name TEXT PRIMARY KEY, root_version TEXT NOT NULL, wrapped BLOB NOT NULL,"
            " created_at REAL NOT NULL)",
            # Subjects are known only by a keyed hash of the caller's id.
            "CREATE TABLE subjects ("
            " subject_ref BLOB PRIMARY KEY,"
            " state TEXT NOT NULL CHECK (state IN ('active','restricted','dormant','erased')),"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL, erased_at REAL)",
            # Wrapped keys live apart from ciphertext.
            "CREATE TABLE subject_keys ("
            " subject_ref BLOB PRIMARY KEY REFERENCES subjects(subject_ref),"
            " root_version TEXT NOT NULL, wrapped BLOB NOT NULL, created_at REAL NOT NULL)",
            "CREATE INDEX subject_keys_by_root ON subject_keys(root_version)",
            "CREATE TABLE records ("
            " record_id TEXT PRIMARY KEY,"
            " subject_ref BLOB NOT NULL REFERENCES subjects(subject_ref),"
            " category TEXT NOT NULL, version INTEGER NOT NULL, content_type TEXT NOT NULL,"
            " blob_ref TEXT, content_length INTEGER, field_names TEXT NOT NULL,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL)",
            "CREATE INDEX records_by_subject ON records(subject_ref, record_id)",
            "CREATE TABLE record_keys ("
            " record_id TEXT NOT NULL REFERENCES records(record_id) ON DELETE CASCADE,"
            " version INTEGER NOT NULL, wrapped BLOB NOT NULL, PRIMARY KEY (record_id, version))",
            # Deleting a data key deletes its payloads: shredding is one statement.
            "CREATE TABLE record_payloads ("
            " record_id TEXT NOT NULL, version INTEGER NOT NULL, field TEXT NOT NULL,"
            " ciphertext BLOB NOT NULL, PRIMARY KEY (record_id, version, field),"
            " FOREIGN KEY (record_id, version) REFERENCES record_keys(record_id, version)"
            " ON DELETE CASCADE)",
            "CREATE TABLE idempotency ("
            " principal TEXT NOT NULL, idem_key TEXT NOT NULL, request_digest BLOB NOT NULL,"
            " record_id TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (principal, idem_key))",
            "CREATE TABLE audit_events ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, principal TEXT NOT NULL,"
            " action TEXT NOT NULL, purpose TEXT NOT NULL, subject_pseudonym TEXT NOT NULL,"
            " record_id TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,"
            " correlation_id TEXT NOT NULL)",
        ],
    ),
    (
        2,
        [
            # Operator lifecycle of root-key versions (retired, marked, destroyed), per provider.
            "CREATE TABLE root_versions ("
            " provider TEXT NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL,"
            " updated_at REAL NOT NULL, destroy_at REAL, detail TEXT NOT NULL,"
            " PRIMARY KEY (provider, version))",
            "CREATE INDEX service_keys_by_root ON service_keys(root_version)",
        ],
    ),
    (
        3,
        [
            # The hash-chained audit log replaces the plain table of schema 1 (kept, unchained).
            "ALTER TABLE audit_events RENAME TO audit_events_v1",
            "CREATE TABLE audit_log ("
            " seq INTEGER PRIMARY KEY, at REAL NOT NULL, principal TEXT NOT NULL,"
            " action TEXT NOT NULL, purpose TEXT NOT NULL, subject_pseudonym TEXT NOT NULL,"
            " record_id TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,"
            " correlation_id TEXT NOT NULL, prev_hash BLOB NOT NULL, entry_hash BLOB NOT NULL)",
            "CREATE INDEX audit_by_subject ON audit_log(subject_pseudonym, seq)",
            "CREATE INDEX audit_by_principal ON audit_log(principal, seq)",
            "CREATE INDEX audit_by_at ON audit_log(at)",
        ],
    ),
    (
        4,
        [
            # Consent grants: checked in the read's own transaction, never cached.
            "CREATE TABLE consent_grants ("
            " grant_id TEXT PRIMARY KEY, subject_ref BLOB NOT NULL REFERENCES subjects(subject_ref),"
            " purpose TEXT NOT NULL, grantee_principal TEXT NOT NULL, grantee_role TEXT NOT NULL,"
            " scope TEXT NOT NULL, valid_from REAL NOT NULL, valid_until REAL,"
            " evidence_reference TEXT NOT NULL, granted_by TEXT NOT NULL, created_at REAL NOT NULL,"
            " revoked_at REAL)",
            "CREATE INDEX consent_grants_by_subject ON consent_grants(subject_ref, purpose)",
        ],
    ),
    (
        5,
        [
            # Business events (match_completed ...), each with a keyed MAC over (subject, name, at)
            # so an edited time is detected.
            "CREATE TABLE subject_events ("
            " subject_ref BLOB NOT NULL REFERENCES subjects(subject_ref), name TEXT NOT NULL,"
            " at REAL NOT NULL, mac BLOB NOT NULL, PRIMARY KEY (subject_ref, name))",
            # Shares: the columns are for listing; the authoritative terms are sealed under the
            # share's own key, whose deletion ends the share for good.
            "CREATE TABLE shares ("
            " share_id TEXT PRIMARY KEY, subject_ref BLOB NOT NULL REFERENCES subjects(subject_ref),"
            " recipient TEXT NOT NULL, purpose TEXT NOT NULL, record_count INTEGER NOT NULL,"
            " fields TEXT NOT NULL, expires_at REAL, event_name TEXT NOT NULL,"
            " event_period REAL, created_by TEXT NOT NULL, created_at REAL NOT NULL,"
            " revoked_at REAL, sealed_terms BLOB NOT NULL)",
            "CREATE INDEX shares_by_subject ON shares(subject_ref)",
            "CREATE INDEX shares_by_recipient ON shares(recipient)",
            "CREATE TABLE share_keys ("
            " share_id TEXT PRIMARY KEY REFERENCES shares(share_id) ON DELETE CASCADE,"
            " wrapped BLOB NOT NULL)",
        ],
    ),
    (
        6,
        [
            # Legal holds block every deletion path while active.
            "CREATE TABLE legal_holds ("
            " hold_id TEXT PRIMARY KEY, subject_ref BLOB NOT NULL REFERENCES subjects(subject_ref),"
            " record_id TEXT, reason TEXT NOT NULL, case_reference TEXT NOT NULL,"
            " created_by TEXT NOT NULL, created_at REAL NOT NULL, released_at REAL)",
            "CREATE INDEX legal_holds_by_subject ON legal_holds(subject_ref)",
            # Deletions asked for during a hold, carried out at its release.
            "CREATE TABLE pending_deletions ("
            " pending_id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('record','subject')),"
            " subject_ref BLOB NOT NULL, record_id TEXT NOT NULL, requested_by TEXT NOT NULL,"
            " requested_at REAL NOT NULL)",
            "CREATE INDEX pending_deletions_by_subject ON pending_deletions(subject_ref)",
        ],
    ),
    (
        7,
        [
            # 'legal': the data key is wrapped by the subject's legal key (a service key named
            # legal:<subject ref hex>) and survives the subject's erasure until its retention ends.
            "ALTER TABLE records ADD COLUMN key_kind TEXT NOT NULL DEFAULT 'subject'",
        ],
    ),
    (
        8,
        [
            # Activity (writes, and reads at most once a day) drives dormancy.
            "ALTER TABLE subjects ADD COLUMN last_activity REAL",
        ],
    ),
    (
        9,
        [
            # Leases for jobs that one replica at a time should run (root-key epochs, audit
            # checkpoints); the holder renews before expires_at, another takes over after it.
            "CREATE TABLE job_leases ("
            " name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)",
        ],
    ),
    (
        10,
        [
            # Reads find the version the audit chain last witnessed for a record (rollback check).
            "CREATE INDEX audit_by_record ON audit_log(record_id, seq)",
        ],
    ),
    (
        11,
        [
            # Only the entries that witness a version: with every entry of a record in the
            # index, a read scanned all the reads of that record since its last write.
            "DROP INDEX audit_by_record",
            "CREATE INDEX audit_record_versions ON audit_log(record_id, seq)"
            " WHERE decision = 'allow' AND action IN ('record.put', 'record.update')",
        ],
    ),
    (
        12,
        [
            # The rollback witness as a typed column (covered by the entry hash), no longer parsed
            # from the reason text. Entries written before it have none: a record first gets a
            # witness again at its next update.
            "ALTER TABLE audit_log ADD COLUMN witnessed_version INTEGER",
            "DROP INDEX audit_record_versions",
            "CREATE INDEX audit_witness ON audit_log(record_id, seq)"
            " WHERE witnessed_version IS NOT NULL",
        ],
    ),
    (
        13,
        [
            # A read-once record claimed under a legal hold: never released again, destroyed at
            # the hold's release.
            "ALTER TABLE records ADD COLUMN consumed_at REAL",
            # Each data key knows its version's blob, so that a version kept under a hold keeps
            # (and at the release destroys) its own content.
            "ALTER TABLE record_keys ADD COLUMN blob_ref TEXT",
            "UPDATE record_keys SET blob_ref = (SELECT r.blob_ref FROM records r"
            " WHERE r.record_id = record_keys.record_id AND r.version = record_keys.version)",
            "CREATE INDEX record_keys_by_blob ON record_keys(blob_ref)",
        ],
    ),
    (
        14,
        [
            # Pending deletions of a replaced version ('version', with its number).
            "CREATE TABLE pending_deletions_v2 ("
            " pending_id TEXT PRIMARY KEY,"
            " kind TEXT NOT NULL CHECK (kind IN ('record','subject','version')),"
            " subject_ref BLOB NOT NULL, record_id TEXT NOT NULL, requested_by TEXT NOT NULL,"
            " requested_at REAL NOT NULL, version INTEGER NOT NULL DEFAULT 0)",
            "INSERT INTO pending_deletions_v2 (pending_id, kind, subject_ref, record_id,"
            " requested_by, requested_at) SELECT pending_id, kind, subject_ref, record_id,"
            " requested_by, requested_at FROM pending_deletions",
            "DROP TABLE pending_deletions",
            "ALTER TABLE pending_deletions_v2 RENAME TO pending_deletions",
            "CREATE INDEX pending_deletions_by_subject ON pending_deletions(subject_ref)",
        ],
    ),
    (
        15,
        [
            # Consent evidence references and hold reasons, sealed under the subject key (older
            # rows' plaintext evidence is sealed at start-up, then blanked).
            "ALTER TABLE consent_grants ADD COLUMN evidence_sealed BLOB",
            "ALTER TABLE legal_holds ADD COLUMN sealed BLOB",
        ],
    ),
    (
        16,
        [
            # Restriction of one record (a correction or deletion request in progress), and the
            # subject id sealed under the subject key (lifecycle notices name the person to
            # the application; the id dies with the subject key at erasure).
            "ALTER TABLE records ADD COLUMN restricted_at REAL",
            "ALTER TABLE subjects ADD COLUMN sealed_id BLOB",
        ],
    ),
    (
        17,
        [
            # Separated storage of dormant subjects: set while the subject key is wrapped under
            # the dormant context (crypto/context.py subject_key_context), cleared on reactivation.
            "ALTER TABLE subject_keys ADD COLUMN separated_at REAL",
        ],
    ),
    (
        18,
        [
            # What each release handed out (issue 21, the breach scope): the record's category,
            # the names of the fields released (never values) and the role of the principal, in
            # the entry hash when present (entries from before hash as they did). The indexes hold
            # the releases only, by time (a breach window is a range of it) and by principal and
            # time (so that a principal filter does not scan that principal's whole trail).
            "ALTER TABLE audit_log ADD COLUMN category TEXT",
            "ALTER TABLE audit_log ADD COLUMN released_fields TEXT",
            "ALTER TABLE audit_log ADD COLUMN role TEXT",
            "CREATE INDEX audit_releases ON audit_log(at) WHERE decision = 'allow'"
            " AND action IN ('record.get', 'share.read', 'subject.export', 'record.find')",
            "CREATE INDEX audit_releases_by_principal ON audit_log(principal, at)"
            " WHERE decision = 'allow'"
            " AND action IN ('record.get', 'share.read', 'subject.export', 'record.find')",
        ],
    ),
    (
        19,
        [
            # Blind indexes of searchable fields (FindRecords): one token per indexed field of a
            # record's current version, under that field's own key; deleted with the record
            # (shred, erasure, a read-once record consumed) in the same transaction.
            "CREATE TABLE blind_index ("
            " token BLOB NOT NULL, record_id TEXT NOT NULL, subject_ref BLOB NOT NULL,"
            " key_kind TEXT NOT NULL, PRIMARY KEY (token, record_id))",
            "CREATE INDEX blind_index_by_record ON blind_index(record_id)",
            "CREATE INDEX blind_index_by_subject ON blind_index(subject_ref)",
            # the searchable fields (and normalisations) a record's tokens were made for: the
            # backfill re-indexes records whose category's searchable fields changed since
            "ALTER TABLE records ADD COLUMN index_spec TEXT",
        ],
    ),
    (
        20,
        [
            # The audit trail as a Merkle tree (issue 18): the hash of every perfect subtree of
            # the integrated entries, leaves included (level 0, index = seq - 1). Pruned entries
            # keep their leaves here, so that every remaining entry stays provable against the
            # signed checkpoints. No PHI: hashes only.
            "CREATE TABLE tlog_nodes ("
            " log TEXT NOT NULL, level INTEGER NOT NULL, idx INTEGER NOT NULL,"
            " hash BLOB NOT NULL, PRIMARY KEY (log, level, idx))",
        ],
    ),
    (
        21,
        [
            # Group commit of the audit trail (issue 18): a call's entry is written here in its own
            # transaction, with no lock another process waits on; the sequencer moves entries
            # into audit_log (assigning seq and the chain) about every second. Each writer (a
            # thread of a process) numbers its entries without gaps (audit_writers, a row only it
            # updates: a rolled-back call rolls its number back too) and MACs them, so that an
            # entry removed or edited before it is integrated is a gap or a bad MAC at
            # integration (audit_integrated: the last number integrated per writer, a row only
            # the sequencer updates).
            "CREATE TABLE audit_pending ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, writer TEXT NOT NULL, wseq INTEGER NOT NULL,"
            " mac BLOB NOT NULL, at REAL NOT NULL, principal TEXT NOT NULL, action TEXT NOT NULL,"
            " purpose TEXT NOT NULL, subject_pseudonym TEXT NOT NULL, record_id TEXT NOT NULL,"
            " decision TEXT NOT NULL, reason TEXT NOT NULL, correlation_id TEXT NOT NULL,"
            " witnessed_version INTEGER, category TEXT, released_fields TEXT, role TEXT,"
            " UNIQUE (writer, wseq))",
            "CREATE INDEX audit_pending_by_record ON audit_pending(record_id)",
            "CREATE TABLE audit_writers (writer TEXT PRIMARY KEY, next_wseq INTEGER NOT NULL)",
            "CREATE TABLE audit_integrated (writer TEXT PRIMARY KEY, wseq INTEGER NOT NULL)",
        ],
    ),
    (
        22,
        [
            # Only witness entries are ever looked up by record (a read's rollback witness, the
            # witness backfill). Indexing every pending entry by record made each read of a hot
            # record scan that record's un-sequenced reads (issue 19), and every insert update
            # the index; the partial index holds the witnesses alone.
            "DROP INDEX audit_pending_by_record",
            "CREATE INDEX audit_pending_witness ON audit_pending(record_id, id)"
            " WHERE witnessed_version IS NOT NULL",
        ],
    ),
]


def pending_steps(applied: set[int]) -> list[tuple[int, list[str]]]:
    """The steps not yet applied, in order: every version missing from ``schema_migrations``,
    not only those above the highest one (a step that reached a database after a later one,
    as when two lines of work each added a step, is still applied)."""
    return [(version, statements) for version, statements in MIGRATIONS if version not in applied]
