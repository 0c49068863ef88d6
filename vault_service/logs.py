"""Structured logs: one JSON object per line, with the correlation id of the call being served.

Log calls pass their facts as fields, never formatted into the message::

    log.info("rpc failed", extra=fields(rpc=method, status="NOT_FOUND"))

The interceptor sets :data:`correlation_id` for the thread that serves a call, so every line
logged while serving it carries the id the client got in its trailing metadata.

**What never reaches a log line**: plaintext, key material, subject ids, and the *text* of
exceptions (a vendor's message may quote a value). An exception is logged as its type and its
stack of ``file:line function`` frames only. Fields are whatever code passes: by convention only
method names, statuses, fixed reasons, counts and opaque record ids.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

#: the correlation id of the call this thread (or task) is serving; "" outside calls
correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")

_FIELDS = "vault_fields"


def fields(**values: object) -> dict[str, Any]:
    """The ``extra=`` argument of a log call carrying ``values`` as structured fields."""
    return {_FIELDS: values}


def _stack(exc_info: Any) -> list[str]:
    """Frames of a traceback, without the exception's message."""
    _, _, tb = exc_info
    return [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)]


def _facts(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cid = correlation_id.get()
    if cid:
        out["correlation_id"] = cid
    out.update(getattr(record, _FIELDS, {}))
    if record.exc_info and record.exc_info[0] is not None:
        out["error_type"] = record.exc_info[0].__name__
        out["stack"] = _stack(record.exc_info)
    return out


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, pid, msg, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
            **_facts(record),
        }
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``ts pid=N LEVEL logger msg key=value ...`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        facts = " ".join(
            f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in _facts(record).items()
        )
        head = f"{_utc(record.created)} pid={record.process} {record.levelname} {record.name}"
        return f"{head} {record.getMessage()}" + (f" {facts}" if facts else "")


def handler_for(file: Path | None, fmt: str) -> logging.Handler:
    """A handler writing ``fmt`` ("json" or "text") to ``file``, or to standard error."""
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def configure(level: str, fmt: str, file: Path | None) -> None:
    """Route every log record of the process through one handler at ``level``."""
    logging.basicConfig(level=level, handlers=[handler_for(file, fmt)], force=True)
