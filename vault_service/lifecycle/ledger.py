"""The erasure ledger: a record of every erased subject, kept outside the record store.

A database restored from a backup taken before an erasure still holds the subject's wrapped key.
The ledger lives on other storage (``[lifecycle] ledger_path``), is append-only, and is replayed at
start-up before the server serves: any subject it lists that the database still knows as live is
erased again. Each entry is signed with the service's Ed25519 key, so an entry cannot be forged
or edited without detection (a bad entry stops the replay: the server refuses to start rather
than guess).

An entry is written (and fsynced) **before** the database erasure: if the ledger cannot be
written, nothing is erased (UNAVAILABLE); if the database erasure then fails, the replay finishes
it. Entries also record the root-key versions that could have wrapped the subject key, which the
deletion verification job checks for destruction.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from vault_service.crypto.signing import SigningKey, verify_signature
from vault_service.errors import Unavailable


class LedgerTampered(Exception):
    """An entry's signature does not verify: the ledger was edited."""


@dataclass(frozen=True)
class ErasureEntry:
    """One erasure."""

    subject_ref: str
    erased_at: float
    root_versions: tuple[str, ...]
    public_key: str
    signature: str = ""

    def signed_bytes(self) -> bytes:
        body = {k: v for k, v in asdict(self).items() if k != "signature"}
        body["root_versions"] = list(self.root_versions)
        return b"vault-erasure-ledger/v1\x00" + json.dumps(body, sort_keys=True).encode()


class ErasureLedger:
    """Append-only JSON lines at ``path`` (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"ErasureLedger({str(self.path)!r})"

    def append(
        self, signer: SigningKey, subject_ref: bytes, erased_at: float, root_versions: list[str]
    ) -> ErasureEntry:
        """Sign and durably append an entry; Unavailable if it cannot be written."""
        unsigned = ErasureEntry(
            subject_ref.hex(), erased_at, tuple(root_versions), signer.public_key().hex()
        )
        entry = ErasureEntry(
            unsigned.subject_ref,
            erased_at,
            unsigned.root_versions,
            unsigned.public_key,
            signer.sign(unsigned.signed_bytes()).hex(),
        )
        data = dict(asdict(entry))
        data["root_versions"] = list(entry.root_versions)
        line = (json.dumps(data, sort_keys=True) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            raise Unavailable("erasure ledger unavailable") from None
        return entry

    def entries(self, public_key: bytes) -> list[ErasureEntry]:
        """Every entry, each verified against ``public_key``; LedgerTampered on a bad one."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                entry = ErasureEntry(
                    str(d["subject_ref"]),
                    float(d["erased_at"]),
                    tuple(str(v) for v in d["root_versions"]),
                    str(d["public_key"]),
                    str(d["signature"]),
                )
                bytes.fromhex(entry.subject_ref)
            except (ValueError, KeyError, TypeError):
                raise LedgerTampered(f"erasure ledger line {n} is malformed") from None
            if entry.public_key != public_key.hex() or not verify_signature(
                public_key, bytes.fromhex(entry.signature), entry.signed_bytes()
            ):
                raise LedgerTampered(f"erasure ledger line {n} has an invalid signature")
            out.append(entry)
        return out
