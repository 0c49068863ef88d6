"""The ledger proof of a deletion certificate: the destruction ledger's line that records the
destruction, its RFC 6962 inclusion proof in the ledger's tree (leaf data: the line's bytes), and
the witnessed ledger checkpoint it is proved against; and its offline check.

Contract:

- :class:`LedgerProver` reads the ledger once per verification run (lazily: not at all when no
  certificate is issued) and finds each destruction's line: the last line holding an entry equal
  to the destruction's latest entry (the ledger is small: every line is read). Subject erasures
  and record destructions are noted one per line (some 500 bytes); a line longer than
  :data:`MAX_LINE_BYTES` (a batch) is not embedded, and its certificates have no proof, so that
  VerifyDeletion's answer of up to 1,000 certificates stays under the message limit;
- the checkpoint is the ledger's cosigned note kept beside it (``<ledger>.checkpoint``) when it
  covers the line and states the root of the ledger's first lines; otherwise a fresh one from
  the witnessing module (:class:`WitnessedLedger`); otherwise (no witness, or it cannot be
  reached) a checkpoint of the ledger signed by the vault alone, ``"witnessed": false``;
- :func:`check_ledger_proof` needs only the certificate, the vault's public key and, to require
  the witness's cosignature, the witness's name and key: the note verifies under the ledger's
  origin, the line's own signature verifies and it records the certified destruction, and the
  inclusion proof verifies against the note's root.

The line holds no PHI (keyed subject references, object ids, times, causes): it may travel in a
certificate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vault_service.audit.publish import sign_checkpoint
from vault_service.crypto.derive import audit_pseudonym
from vault_service.crypto.signing import SigningKey
from vault_service.errors import Unavailable
from vault_service.lifecycle.audit_log import default_origin
from vault_service.lifecycle.ledger import (
    Destruction,
    DestructionLedger,
    Kind,
    LedgerTampered,
    State,
    parse_line,
)
from vault_service.lifecycle.ledger_sync import LEDGER_LOG
from vault_service.tlog import merkle, note

PROOF_FORMAT = "vault-service/ledger-proof/v1"
#: what a certificate without the proof (issued before it existed) is reported as
NO_PROOF = "no ledger proof"
#: the longest ledger line a certificate embeds (a line of one entry is some 500 bytes)
MAX_LINE_BYTES = 4096


def ledger_origin(public_key: bytes) -> str:
    """The origin the ledger's checkpoints are signed under (as the witnessing module names it)."""
    return default_origin(public_key, LEDGER_LOG)


@dataclass(frozen=True)
class WitnessedLedger:
    """What the witnessing module offers the prover: the ledger's latest cosigned checkpoint
    note kept beside it (None if none), and how to have a fresh one cosigned (False: not now)."""

    kept_checkpoint: Callable[[], str | None]
    publish: Callable[[SigningKey], bool]


def _key(entry: Destruction) -> str:
    return json.dumps(entry.to_json(), sort_keys=True)


class LedgerProver:
    """The ledger proofs of one verification run (see the module docstring)."""

    def __init__(
        self, ledger: DestructionLedger, signer: SigningKey, witnessed: WitnessedLedger | None
    ) -> None:
        self.ledger = ledger
        self.signer = signer
        self.witnessed = witnessed
        self.origin = ledger_origin(signer.public_key())
        self._lines: list[bytes] | None = None
        self._where: dict[str, int] = {}
        self._tree = merkle.MemoryTree()
        #: (note, size, witnessed) of the checkpoint the proofs are against
        self._checkpoint: tuple[str, int, bool] | None = None
        self._published = False

    def _load(self) -> list[bytes]:
        lines = self.ledger.lines()
        public = self.signer.public_key()
        self._where = {}
        self._tree = merkle.MemoryTree()
        for n, line in enumerate(lines):
            for entry in parse_line(line, public, n + 1):
                self._where[_key(entry)] = n  # the last line holding it
            self._tree.append(merkle.leaf_hash(line))
        self._lines = lines
        return lines

    def proof(self, entry: Destruction) -> dict[str, Any] | None:
        """The ledger proof of ``entry`` (a destruction's latest entry, as deletion verification
        reads it); None if no line holds it."""
        lines = self._lines if self._lines is not None else self._load()
        index = self._where.get(_key(entry))
        if index is None or len(lines[index]) > MAX_LINE_BYTES:
            return None
        signed, size, witnessed = self._against(index)
        lines = self._lines or lines  # read again if the ledger grew meanwhile
        return {
            "format": PROOF_FORMAT,
            "leaf_index": index,
            "line": lines[index].decode(),
            "inclusion_proof": [h.hex() for h in self._tree.inclusion_proof(index, size)],
            "checkpoint": signed,
            "witnessed": witnessed,
        }

    def _against(self, index: int) -> tuple[str, int, bool]:
        """The checkpoint to prove line ``index`` against (see the module docstring)."""
        if self._checkpoint is not None and self._checkpoint[1] > index:
            return self._checkpoint
        found = self._witnessed(index)
        if found is None and self.witnessed is not None and not self._published:
            self._published = True  # one fresh checkpoint per run at most
            if self.witnessed.publish(self.signer):
                found = self._witnessed(index)
        if found is None:
            size = self._tree.size
            signed = sign_checkpoint(self.origin, size, self._tree.root(size), self.signer)
            found = (signed, size, False)
        self._checkpoint = found
        return found

    def _witnessed(self, index: int) -> tuple[str, int, bool] | None:
        """The kept cosigned note if it covers line ``index`` and states this ledger's root."""
        if self.witnessed is None:
            return None
        try:
            signed = self.witnessed.kept_checkpoint()
            if signed is None:
                return None
            checkpoint = note.open_checkpoint(signed, self.origin, self.signer.public_key())
        except (OSError, ValueError, Unavailable):
            return None
        if checkpoint.size > self._tree.size:
            self._load()  # appended meanwhile (by another process): the tree grows
        if not index < checkpoint.size <= self._tree.size:
            return None
        if self._tree.root(checkpoint.size) != checkpoint.root:
            return None  # not this ledger's tree (a repair in flight): never prove against it
        return signed, checkpoint.size, True


def _certifies(cert: Mapping[str, Any], entry: Destruction) -> bool:
    """Whether ``entry`` is the destruction ``cert`` certifies."""
    if entry.state is not State.DONE or entry.at != cert.get("erased_at"):
        return False
    if audit_pseudonym(entry.subject_ref) != cert.get("subject_pseudonym"):
        return False
    if cert.get("kind") == "record":
        return entry.kind is Kind.RECORD and entry.object_id == cert.get("record_id")
    return entry.kind is Kind.SUBJECT


def check_ledger_proof(
    cert: Mapping[str, Any], public_key: bytes, witness: tuple[str, bytes] | None = None
) -> tuple[bool, str]:
    """Offline check of a certificate's ledger proof (see the module docstring), against the
    vault's ``public_key`` and, if given, the witness's (name, public key). (True,
    :data:`NO_PROOF`) for a certificate without one."""
    proof = cert.get("ledger_proof")
    if proof is None:
        return True, NO_PROOF
    try:
        if proof["format"] != PROOF_FORMAT:
            raise ValueError(proof["format"])
        index = proof["leaf_index"]
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(index)
        line = str(proof["line"]).encode()
        hashes = [bytes.fromhex(str(h)) for h in proof["inclusion_proof"]]
        signed = str(proof["checkpoint"])
    except (KeyError, TypeError, ValueError):
        return False, "malformed ledger proof"
    try:
        checkpoint = note.open_checkpoint(signed, ledger_origin(public_key), public_key)
    except note.NoteError:
        return False, "the ledger checkpoint's signature does not verify"
    if witness is not None:
        try:
            note.verify_cosignature(signed, *witness)
        except note.NoteError:
            return False, f"the ledger checkpoint is not cosigned by the witness {witness[0]}"
    try:
        entries = parse_line(line, public_key)
    except LedgerTampered:
        return False, "the ledger line's signature does not verify"
    if not any(_certifies(cert, e) for e in entries):
        return False, "the ledger line does not record the certified destruction"
    size = checkpoint.size
    if not merkle.verify_inclusion(merkle.leaf_hash(line), index, size, hashes, checkpoint.root):
        return False, f"ledger line {index} is not included in the ledger checkpoint of size {size}"
    cosigned = f", cosigned by {witness[0]}" if witness is not None else ""
    return True, f"ledger line {index} included in the ledger checkpoint of size {size}{cosigned}"
