"""Lifecycle jobs. Today: the purge of erased subjects' rows (``VaultService.purge_erased``, run
by a background thread of the server). Retention sweeps, rotation/rewrap and deletion verification
are tracked by their own issues."""
