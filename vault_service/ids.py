"""Identifiers: time-ordered record ids (UUIDv7 layout), which insert faster than random UUIDs in
B-tree indexes, and correlation ids."""

from __future__ import annotations

import re
import secrets
import time
import uuid

_RECORD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def new_record_id(now: float | None = None) -> str:
    """A UUIDv7 string: 48-bit millisecond time, version 7, 74 random bits."""
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    rand = secrets.randbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def is_record_id(value: str) -> bool:
    """Whether ``value`` has the shape of a record id."""
    return bool(_RECORD_ID.fullmatch(value))


def new_correlation_id() -> str:
    """A short random id tying a request's response, logs and audit entries together."""
    return secrets.token_hex(8)


def record_id_time(record_id: str) -> float | None:
    """The creation time embedded in a record id (UUIDv7 milliseconds), None if not one."""
    if not is_record_id(record_id):
        return None
    return int(record_id.replace("-", "")[:12], 16) / 1000.0
