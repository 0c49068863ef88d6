"""Audit trail.

Today every decision and mutation is written as an ``AuditRow`` by the record store in the same
transaction as the change it records (reads: before any plaintext is released), without PHI: a
keyed pseudonym of the subject, never its id. Tamper evidence (hash chain, signed checkpoints),
retention and the auditor's query API are tracked by their own issue.
"""
