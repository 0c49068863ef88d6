"""Row types of shares, business events, legal holds and deferred deletions.

A re-export kept for the import path callers use (``from vault_service.storage.shares import
ShareRow``); the types themselves live with every other row type in :mod:`.rows`, and the
operations on them are :class:`~vault_service.storage.records.RecordStore`'s.
"""

from vault_service.storage.rows import EventRow, HoldRow, PendingDeletion, ShareRow

__all__ = ["EventRow", "HoldRow", "PendingDeletion", "ShareRow"]
