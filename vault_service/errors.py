"""The one error tree of vault-service.

Every failure that can reach a caller is a :class:`VaultError` subclass that carries its gRPC status
(by name, so that this module and the layers under the service never import grpc) and a *public*
message. The public message is the only text a client ever sees: it never contains plaintext, key
material, subject ids or the text of an underlying exception. Vendor errors (sqlite3, boto3, hvac,
cryptography) are translated into this tree once, at the adapter that calls the vendor.
"""

from __future__ import annotations

import enum
import unicodedata


class Status(enum.Enum):
    """gRPC status names used by the error tree (mirrors grpc.StatusCode without importing grpc)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DATA_LOSS = "DATA_LOSS"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class VaultError(Exception):
    """Base of every error the service reports. ``str(err)`` is the public message."""

    status: Status = Status.INTERNAL
    default_message = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.public_message = message or self.default_message
        #: set by the client SDK from the response's trailing metadata
        self.correlation_id = ""
        super().__init__(self.public_message)


class InvalidArgument(VaultError):
    """The request is malformed or semantically invalid."""

    status = Status.INVALID_ARGUMENT
    default_message = "invalid argument"


class Unauthenticated(VaultError):
    """No credential, or a credential that does not identify a principal."""

    status = Status.UNAUTHENTICATED
    default_message = "authentication required"


class PermissionDenied(VaultError):
    """The principal may not do this. Also used for records that do not exist (no oracle)."""

    status = Status.PERMISSION_DENIED
    default_message = "permission denied"


class NotFound(VaultError):
    """The record is absent, shredded, or its subject was erased."""

    status = Status.NOT_FOUND
    default_message = "not found"


class AlreadyExists(VaultError):
    """An idempotency key was reused for a different request."""

    status = Status.ALREADY_EXISTS
    default_message = "already exists"


class FailedPrecondition(VaultError):
    """The system is not in a state that allows this (legal hold, key disabled, missing mark)."""

    status = Status.FAILED_PRECONDITION
    default_message = "failed precondition"


class LegalHoldActive(FailedPrecondition):
    """A legal hold blocks this deletion; when asked for by a caller, it was recorded and will be
    carried out when the hold is released."""

    default_message = (
        "a legal hold blocks this deletion; it is recorded and will be carried "
        "out when the hold is released"
    )


class RootVersionRetired(FailedPrecondition):
    """A key was wrapped under a root version that the operator has retired or is destroying
    (another process changed the key state): the store refused to keep it. The key hierarchy
    refreshes its provider and wraps again; callers only see it if that keeps failing."""

    default_message = "root key version is retired; retry"


class Unavailable(VaultError):
    """A dependency (key provider, database, audit sink) is down. Nothing was written; retry."""

    status = Status.UNAVAILABLE
    default_message = "service unavailable, retry later"


class SubjectSeparated(Unavailable):
    """The subject was made dormant (its key separated) while this write was under way: nothing
    was written. A retry brings the subject back first (a write is activity)."""

    default_message = "the subject became dormant during this write; nothing was written, retry"


class ResourceExhausted(VaultError):
    """A size, rate or concurrency limit was hit."""

    status = Status.RESOURCE_EXHAUSTED
    default_message = "resource exhausted"


class DataLoss(VaultError):
    """Stored ciphertext or a wrapped key failed authentication. A security event."""

    status = Status.DATA_LOSS
    default_message = "stored data failed an integrity check"


class IntegrityError(DataLoss):
    """Raised by the crypto layer for every authentication failure, with no detail (no oracle).

    Tag mismatch, wrong key, wrong context, truncation, trailing data and reordering are all this one
    error with the same message, so that a caller cannot learn which check failed.
    """

    def __init__(self) -> None:
        super().__init__()


class ConfigError(Exception):
    """A configuration or policy file is invalid. Raised at start-up; the message names file and key."""


class Internal(VaultError):
    """A bug. The message is generic; details go to the server log under a correlation id."""

    status = Status.INTERNAL


#: the most of a caller's value an error message repeats
SHOWN_CHARS = 64


def shown(value: str) -> str:
    """A caller's value as an error message may repeat it: at most :data:`SHOWN_CHARS`
    characters, control and other non-printable characters replaced, quoted. Messages never echo
    more of what a caller sent (it may be PHI typed into the wrong place, or an attack on logs)."""
    clean = "".join(
        c if c.isprintable() and unicodedata.category(c)[0] != "C" else "\ufffd"
        for c in value[: SHOWN_CHARS + 1]
    )
    if len(clean) > SHOWN_CHARS:
        clean = clean[: SHOWN_CHARS - 1] + "\u2026"
    return "'" + clean.replace("'", "\u2019") + "'"
