"""Destruction and the life of data: THE erase path (erasure.py), THE shred path and the purge
(shredding.py), the destruction ledger and its replay (ledger.py, replay.py), retention,
dormancy and business events, deletion verification, root-key rotation and the audit jobs."""
