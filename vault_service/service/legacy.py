"""Start-up sealing of values an older version stored in plaintext (consent evidence references,
hold reasons and case references): each is sealed under its subject's key while the subject is
live, and blanked once it is erased. Idempotent: a value already sealed is not listed again."""

from __future__ import annotations

from collections.abc import Callable

from vault_service.crypto import Context
from vault_service.errors import DataLoss
from vault_service.key_hierarchy import KeyHierarchy

#: one page of plaintext values after an id: (id, subject reference, value)
Pages = Callable[[str, int], list[tuple[str, bytes, bytes]]]


def seal_plaintext(
    keys: KeyHierarchy,
    pages: Pages,
    context: Callable[[bytes, str], Context],
    save: Callable[[str, bytes], None],
    batch: int = 500,
) -> int:
    """Seal every value ``pages`` lists and ``save`` it (b"" for an erased subject); returns how
    many. A subject whose key fails authentication is left alone (an integrity event)."""
    done = 0
    after = ""
    while rows := pages(after, batch):
        for oid, ref, value in rows:
            try:
                sealed = keys.seal_for_subject(ref, context(ref, oid), value)
            except DataLoss:
                continue
            save(oid, sealed or b"")
            done += 1
        after = rows[-1][0]
    return done
