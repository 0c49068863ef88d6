"""A pure transparency-log core: RFC 6962 Merkle trees and C2SP signed checkpoints.

No I/O, no clock: storage shells (the audit trail, the destruction ledger) keep the nodes and
the notes, and call these functions with what they read.

- :mod:`.merkle`: RFC 6962 / RFC 9162 §2.1 hashes, roots, inclusion and consistency proofs over
  stored perfect subtrees (one batch read each), their verification, and :class:`MemoryTree`.
- :mod:`.note`: c2sp.org/signed-note (Ed25519), tlog-checkpoint and tlog-cosignature/v1.
"""

from vault_service.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryTree,
    Node,
    NodeReader,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from vault_service.tlog.note import (
    Checkpoint,
    Note,
    NoteError,
    Signature,
    add_signature_lines,
    cosign,
    open_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_cosignature,
    verify_note,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Checkpoint",
    "MemoryTree",
    "Node",
    "NodeReader",
    "Note",
    "NoteError",
    "Signature",
    "add_signature_lines",
    "consistency_proof",
    "cosign",
    "inclusion_proof",
    "leaf_hash",
    "new_nodes",
    "node_hash",
    "open_note",
    "parse_verifier_key",
    "root",
    "sign_note",
    "verifier_key",
    "verify_consistency",
    "verify_cosignature",
    "verify_inclusion",
    "verify_note",
]
