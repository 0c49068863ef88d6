"""Request validation: every rule about the shape of what a caller sends, written once.

Each check raises INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for sizes) with a message that repeats at
most a short, sanitized part of the caller's value (:func:`vault_service.errors.shown`). Times are
seconds since the Unix epoch: finite and within :data:`TIME_RANGE`; durations finite, positive and
at most :data:`MAX_DURATION`. A NaN or an infinity is never stored as "no end".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from vault_service.errors import InvalidArgument, ResourceExhausted, shown
from vault_service.ids import is_record_id
from vault_service.policy import Category, Policy
from vault_service.policy.loader import EVENT, NAME
from vault_service.policy.model import CONTENT_FIELD
from vault_service.service.types import ContentStream, Limits

MAX_SUBJECT_ID = 256
MAX_IDEMPOTENCY_KEY = 128
MAX_PAGE_SIZE = 500
MAX_AUDIT_PAGE = 1000
#: evidence and case references: 1-128 characters without spaces
REFERENCE = re.compile(r"^[^\s]{1,128}$")
#: the names a policy gives (categories, purposes, roles, principals), as filters a caller sends,
#: and business event names (RecordEvent, share expiry, retention rules): the loader's rules
POLICY_NAME = NAME
EVENT_NAME = EVENT
#: a media type (RFC 6838 names, optional parameters); stored in plaintext as metadata, so it is
#: held to this shape and length rather than taking free text
CONTENT_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+-]+){0,4}$"
)
MAX_CONTENT_TYPE = 127
#: accepted times: from the epoch to 9999-12-31T23:59:59Z
TIME_RANGE = (0.0, 253402300799.0)
#: the longest accepted duration: 100 years
MAX_DURATION = 100 * 365.25 * 86400


def subject_id(value: str) -> None:
    if not value or len(value.encode()) > MAX_SUBJECT_ID:
        raise InvalidArgument(f"subject_id is required (at most {MAX_SUBJECT_ID} bytes)")


def record_id(value: str, what: str = "record_id") -> None:
    """A record, grant, share or hold id (all are UUIDv7 strings)."""
    if not is_record_id(value):
        raise InvalidArgument(f"{what} is malformed")


def purpose(policy: Policy, name: str) -> None:
    if not name:
        raise InvalidArgument("purpose is required")
    if name not in policy.purposes:
        raise InvalidArgument("unknown purpose")


def category(policy: Policy, name: str) -> Category:
    found = policy.categories.get(name)
    if found is None:
        raise InvalidArgument("unknown category")
    return found


def time(value: float, what: str) -> float:
    """A point in time a caller sent: finite and within :data:`TIME_RANGE`."""
    low, high = TIME_RANGE
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgument(f"{what} must be a time between {low:.0f} and {high:.0f} (Unix seconds)")
    return value


def policy_name(value: str, what: str) -> None:
    """Empty (no filter), or the shape of a name the policy gives (the name may be one a policy
    had once: audit entries outlive policy edits)."""
    if value and not POLICY_NAME.fullmatch(value):
        raise InvalidArgument(
            f"{what} must be a name as the policy gives them: 1-64 of a-z, 0-9, '_', '-', '.'"
        )


def duration(value: float, what: str) -> float:
    """A period a caller sent: finite, positive, at most :data:`MAX_DURATION`."""
    if not math.isfinite(value) or not 0 < value <= MAX_DURATION:
        raise InvalidArgument(f"{what} must be a positive duration of at most 100 years")
    return value


def event_name(value: str) -> None:
    if not EVENT_NAME.fullmatch(value):
        raise InvalidArgument("event name: 1-64 of a-z, 0-9 and _")


def reference(value: str, what: str) -> None:
    if not REFERENCE.fullmatch(value):
        raise InvalidArgument(f"{what}: 1-128 characters, no spaces")


def page(size: int, token: str, limit: int) -> None:
    """A page size and a record-id page token."""
    if not 0 <= size <= limit:
        raise InvalidArgument(f"page_size must be between 0 and {limit}")
    if token and not is_record_id(token):
        raise InvalidArgument("page_token is malformed")


def content_type(value: str) -> None:
    """Empty, or a media type such as ``image/jpeg`` (at most :data:`MAX_CONTENT_TYPE` chars)."""
    if value and (len(value) > MAX_CONTENT_TYPE or not CONTENT_TYPE.fullmatch(value)):
        raise InvalidArgument("content_type must be a media type such as image/jpeg")


def idempotency_key(value: str) -> None:
    if len(value) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(f"idempotency_key is at most {MAX_IDEMPOTENCY_KEY} characters")


def payload(
    limits: Limits, cat: Category, fields: Mapping[str, str], content: bytes | ContentStream | None
) -> None:
    """The fields and content of a new version fit the category and the limits."""
    if len(fields) > limits.max_fields:
        raise ResourceExhausted(f"at most {limits.max_fields} fields per record")
    for name, value in fields.items():
        if name not in cat.fields or name == CONTENT_FIELD:
            raise InvalidArgument(f"field {shown(name)} is not declared by the category")
        if len(value.encode()) > limits.max_field_bytes:
            raise ResourceExhausted(f"a field is larger than {limits.max_field_bytes} bytes")
    if content is not None:
        if not cat.content:
            raise InvalidArgument("this category does not take content")
        if isinstance(content, ContentStream):
            declared = content.declared_size
            if declared is not None and declared > limits.max_object_bytes:
                raise ResourceExhausted(f"content larger than {limits.max_object_bytes} bytes")
        elif len(content) > limits.max_content_bytes:
            raise ResourceExhausted(f"content larger than {limits.max_content_bytes} bytes")
    if not fields and content is None:
        raise InvalidArgument("a record needs at least one field or content")
