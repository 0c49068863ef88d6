"""The blind index half of the record store's interface (FindRecords, and the backfill that
keeps the index made for the policy's searchable fields): the tokens themselves are written and
deleted with the records, by the record store's writes and destructions.
:class:`~vault_service.storage.records.RecordStore` extends it; split out so that each
interface module stays one capability.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence


class SearchIndex(abc.ABC):
    """Lookups and maintenance of the blind index (see the module docstring)."""

    @abc.abstractmethod
    def find_records(self, token: bytes, category: str, after: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of live records of ``category`` whose current version has the
        blind index ``token``, in id order after ``after`` (FindRecords)."""

    @abc.abstractmethod
    def stale_index(self, category: str, spec: str, after: str, limit: int) -> list[str]:
        """Up to ``limit`` ids (after ``after``) of live records of ``category`` whose blind index
        was made for other searchable fields than ``spec`` (or never), except those of
        separated (dormant) subjects, whose key only reactivation opens."""

    @abc.abstractmethod
    def replace_tokens(self, record_id: str, version: int, spec: str, tokens: Sequence[bytes]) -> bool:
        """Make ``tokens`` (for ``spec``) the blind index of the record, if it is still at
        ``version`` and not consumed; False (nothing changed) otherwise."""
