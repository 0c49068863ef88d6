"""vaultctl audit tail: the audit trail as a stream of lines for a SIEM, from a resumable cursor.

Contract: asks a running server over gRPC with an auditor's token (TailAudit, action
``audit.tail``; the call is audited once, when it starts), like ``vaultctl audit query``. Prints
one line per entry to stdout, in seq order: a JSON object (``--format json``, the default: the
entry's fields, its ``seq`` and ``"format": "vault-service/audit-event/v1"``) or an ArcSight CEF
line (``--format cef``). Entries missing past the cursor (pruned) are reported by one gap line
(``vault-service/audit-gap/v1``, or a CEF ``audit.gap`` event) and a warning on stderr.

Delivery is at least once: with ``--cursor-file``, each line is printed and flushed, then the
file is replaced atomically (a temporary file written and fsynced, renamed over it, the directory
fsynced) with the seq of that line; a start resumes after that seq (``--after-seq`` wins when
given). A crash between the two re-prints that one line on the next start; no entry is ever
skipped. SIGINT (Ctrl-C) and SIGTERM are held off while a line and its cursor are written, then
end the command cleanly: exit 130 (SIGINT) or 143 (SIGTERM), the cursor naming the last line
printed. A cursor file is used by one tail at a time (an exclusive lock beside it).

With ``--prove`` each entry is verified offline before its line is printed (:mod:`.audit_prove`);
the first that fails is not printed (nor its seq recorded) and ends the command with exit 1. A
JSON line then says ``"proved"``: true when the entry was proved included in the signed
checkpoint, false when it is newer than it (a followed entry, usually: not yet provable).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from vault_service import __version__
from vault_service.cli import audit_prove
from vault_service.cli.common import Output, add_client_args, client_of
from vault_service.durable import replace_file
from vault_service.errors import ConfigError

if TYPE_CHECKING:
    from vault_service.client.results import AuditEvent, TailGap

EVENT_FORMAT = "vault-service/audit-event/v1"
GAP_FORMAT = "vault-service/audit-gap/v1"
CURSOR_FORMAT = "vault-service/audit-cursor/v1"

#: CEF severities (0-10): an allowed call, a refusal, entries missing from the export
SEVERITY = {"allow": 3, "deny": 6}
GAP_SEVERITY = 7

#: the custom string fields of a CEF line: (key, label, the event's attribute)
CUSTOM_STRINGS = (
    ("cs1", "purpose", "purpose"),
    ("cs2", "subjectPseudonym", "subject_pseudonym"),
    ("cs3", "recordId", "record_id"),
    ("cs4", "correlationId", "correlation_id"),
    ("cs5", "category", "category"),
    ("cs6", "releasedFields", "released_fields"),
)

#: the exit codes of a command ended by a signal
EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


# CEF ----------------------------------------------------------------------------------------------


def cef_header(text: str) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped (a line break, which the format has no room
    for in a header, is written ``\\n`` or ``\\r`` as in extension values)."""
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def cef_value(text: str) -> str:
    """A CEF extension value: ``\\``, ``=`` and line breaks escaped (``|`` needs none there)."""
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _cef(signature: str, name: str, severity: int, extension: list[tuple[str, str]]) -> str:
    header = "|".join(
        cef_header(part)
        for part in ("vault-service", "vault-service", __version__, signature, name, str(severity))
    )
    pairs = " ".join(f"{key}={cef_value(value)}" for key, value in extension if value != "")
    return f"CEF:0|{header}|{pairs}"


def cef_event(event: AuditEvent) -> str:
    """An audit entry as one CEF line: ``rt`` the time (ms since the epoch), ``externalId`` the
    seq, ``suser`` the principal, ``spriv`` its role (releases), ``act`` the action, ``outcome``
    the decision, ``reason``, and ``cs1``..``cs6`` (labelled) for the purpose, the subject's
    pseudonym, the record id, the correlation id, the category and the fields released."""
    extension = [
        ("rt", str(round(event.at * 1000))),
        ("externalId", str(event.seq)),
        ("suser", event.principal),
        ("spriv", event.role),
        ("act", event.action),
        ("outcome", event.decision),
        ("reason", event.reason),
    ]
    for key, label, attribute in CUSTOM_STRINGS:
        raw = getattr(event, attribute)
        value = ",".join(raw) if isinstance(raw, tuple) else str(raw)
        if value:
            extension += [(f"{key}Label", label), (key, value)]
    return _cef(event.action, event.action, SEVERITY.get(event.decision, 5), extension)


def cef_gap(gap: TailGap) -> str:
    """A gap as one CEF line (``audit.gap``): the first and last missing seq, and how many."""
    return _cef(
        "audit.gap",
        "audit.gap",
        GAP_SEVERITY,
        [
            ("cn1Label", "fromSeq"),
            ("cn1", str(gap.from_seq)),
            ("cn2Label", "toSeq"),
            ("cn2", str(gap.to_seq)),
            ("cnt", str(gap.skipped)),
            ("msg", f"audit entries {gap.from_seq}-{gap.to_seq} are not in the trail (pruned)"),
        ],
    )


# JSON ---------------------------------------------------------------------------------------------


#: the keys of an event's dict a JSON line leaves out: the proof means nothing without its
#: checkpoint note, which the line does not carry (``--prove`` checks it before printing)
JSON_LEFT_OUT = ("inclusion_proof", "tree_size")


def json_event(event: AuditEvent, proved: bool | None = None) -> str:
    """The JSON line of an event; with ``--prove`` (``proved`` not None) ``"proved"`` says
    whether it was proved included in the signed checkpoint (false: newer than it)."""
    data = {k: v for k, v in event.as_dict().items() if k not in JSON_LEFT_OUT}
    if proved is not None:
        data["proved"] = proved
    return json.dumps({**data, "format": EVENT_FORMAT}, sort_keys=True)


def json_gap(gap: TailGap) -> str:
    data = {"format": GAP_FORMAT, "from_seq": gap.from_seq, "to_seq": gap.to_seq}
    return json.dumps({**data, "skipped": gap.skipped}, sort_keys=True)


FORMATS = {"json": (json_event, json_gap), "cef": (cef_event, cef_gap)}


# the cursor ---------------------------------------------------------------------------------------


def read_cursor(path: Path) -> int | None:
    """The seq a cursor file holds (None: no file yet). A file that is not a cursor is a
    configuration error, never a reason to start over or to skip ahead."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        seq = data["seq"] if isinstance(data, dict) else data
        if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0:
            return seq
    except (ValueError, KeyError):
        pass
    raise ConfigError(f'{path}: not an audit tail cursor (expected {{"seq": N}} or N)')


def write_cursor(path: Path, seq: int) -> None:
    """Replace the cursor file atomically: a temporary file beside it written and fsynced,
    renamed over it, and the directory fsynced (the rename itself is durable)."""
    replace_file(path, (json.dumps({"format": CURSOR_FORMAT, "seq": seq}) + "\n").encode())


@contextlib.contextmanager
def cursor_lock(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` exclusively: two tails writing one cursor would lose each other's."""
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{path}: another vaultctl audit tail uses this cursor file") from None
        yield
    finally:
        os.close(fd)


# signals ------------------------------------------------------------------------------------------


class Stopped(BaseException):
    """SIGINT or SIGTERM, raised where a line and its cursor are not half written."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Signals:
    """SIGINT and SIGTERM end the tail (:class:`Stopped`), but never inside :meth:`held`."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._holding = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pending = signum
        if not self._holding:
            raise Stopped(signum)

    def __enter__(self) -> Signals:
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self.pending is not None:
            raise Stopped(self.pending)


# the command --------------------------------------------------------------------------------------


def _start(args: argparse.Namespace, cursor: Path | None) -> int:
    """Where the tail starts: ``--after-seq``, else the cursor file's seq, else 0."""
    if args.after_seq is not None:
        return int(args.after_seq)
    return (read_cursor(cursor) if cursor is not None else None) or 0


def cmd_audit_tail(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    cursor = Path(args.cursor_file) if args.cursor_file else None
    lock = cursor_lock(cursor) if cursor is not None else contextlib.nullcontext()
    code = 0
    try:
        with lock, Signals() as signals:
            code = _tail(args, env, cursor, _start(args, cursor), signals)
    except Stopped as stop:
        code = EXIT_CODES[stop.signum]
    return code


def _tail(
    args: argparse.Namespace, env: Mapping[str, str], cursor: Path | None, after: int, signals: Signals
) -> int:
    """Print each line, then (``cursor``) record its seq; a signal ends it between two lines.
    With ``--prove`` each entry is verified first: the first that fails is not printed, and
    ends the command (exit 1, naming it)."""
    from vault_service.client.results import TailGap

    event_line, gap_line = FORMATS[args.format]
    timeout = None if args.follow else args.timeout
    prover = audit_prove.prover_of(args, env) if args.prove else None
    with client_of(args, env) as client:
        for item in client.tail_audit(after, args.follow, args.limit, timeout=timeout):
            proved: bool | None = None
            if prover is not None and not isinstance(item, TailGap):
                try:
                    proved = audit_prove.checked(prover, item, item.checkpoint).proved
                except audit_prove.ProofFailed as failed:
                    print(f"audit proof FAILED: {failed}", file=sys.stderr, flush=True)
                    return 1
            with signals.held():
                if isinstance(item, TailGap):
                    print(gap_line(item), flush=True)
                    print(
                        f"warning: audit entries {item.from_seq}-{item.to_seq} are not in "
                        "the trail (pruned): they cannot be exported",
                        file=sys.stderr,
                        flush=True,
                    )
                    seq = item.to_seq
                else:
                    text = json_event(item, proved) if args.format == "json" else event_line(item)
                    print(text, flush=True)
                    seq = item.seq
                if cursor is not None:
                    write_cursor(cursor, seq)
    return 0


def add_parser(audit: Any) -> None:
    """vaultctl audit tail ... (registered by :mod:`.audit`)."""
    p = audit.add_parser(
        "tail",
        help="print the audit trail from a cursor, one line per entry, for a SIEM (auditor token)",
    )
    p.add_argument("--follow", action="store_true", help="after the entries written, print each new one")
    p.add_argument(
        "--after-seq",
        type=int,
        default=None,
        help="start after this seq (default: the cursor file's, else 0: the whole trail)",
    )
    p.add_argument(
        "--cursor-file",
        metavar="PATH",
        help="resume after the seq it holds; replaced atomically after each line printed",
    )
    p.add_argument("--format", choices=sorted(FORMATS), default="json", help="json lines or CEF")
    p.add_argument("--limit", type=int, default=0, help="stop after this many entries (0: none)")
    audit_prove.add_prove_args(p)
    add_client_args(p)
    p.set_defaults(fn=cmd_audit_tail)
