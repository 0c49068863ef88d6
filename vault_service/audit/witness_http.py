"""A witness process: c2sp.org/tlog-witness over HTTP, backed by a :class:`DirectoryWitness`
(``vaultctl witness serve``; docs/audit.md, "A separate witness process").

The witness holds its own key (``witness.key`` in its directory) and knows each log it witnesses
by its origin and the Ed25519 key signing its checkpoints; nothing else is trusted. It speaks:

- ``POST /add-checkpoint``, exactly as tlog-witness says: 200 with the witness's cosignature
  line(s) (``text/x.tlog.signature``); 404 for an unknown origin; 403 when no signature by the
  log's key verifies; 400 for a malformed body or an old size above the checkpoint's (a rollback
  asked for); 409 with the held size (``text/x.tlog.size``) when the old size is not the held
  one; 422 for a checkpoint of size 0 without the empty root, a proof from size 0, a proof that
  does not verify, or another root at the held size. The new checkpoint is persisted (fsync)
  under the directory's lock before the answer, so the check and the update are atomic.
- ``GET /<sha256 hex of the origin>/checkpoint``: tlog-witness's monitoring endpoint (the held
  cosigned note; 404 when none).
- Vault extensions, for what :class:`DirectoryWitness` does beyond the spec:
  ``POST /vault/add-checkpoint-with-entries`` (the destruction ledger's lines with its checkpoint:
  the witness keeps them after checking they are the checkpoint's leaves; 422 when they are not),
  ``GET /vault/latest?origin=`` (200 the held note, 204 none held, 404 unknown log),
  ``GET /vault/entries?origin=&start=`` (a page of kept leaves, :data:`ENTRIES_PAGE` at most;
  empty: no more) and ``POST /vault/reset?origin=`` (the signed reset statement: 204; 403 not
  signed by the log's key; 422 refused, with why).

Errors are ``text/plain``, one short line saying why. Bodies are bounded (413 beyond; 411
without a Content-Length) and never logged: a request is logged as its method, path and status.
A stop (:func:`serve_until`) lets the calls in flight finish. There is no TLS here: listen on
loopback or a private network, or behind a TLS-terminating proxy.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vault_service.audit import witness_wire as wire
from vault_service.audit.witness import (
    DirectoryWitness,
    LogKey,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
)
from vault_service.logs import fields
from vault_service.tlog import note
from vault_service.tlog.note import Checkpoint, NoteError

log = logging.getLogger("vault_service.witness_http")

#: the largest body of add-checkpoint and reset (63 proof lines and a note of 100 signatures
#: fit many times over)
MAX_NOTE_BODY = 64 * 1024
#: the default bound of an add-checkpoint-with-entries body (``--max-body-bytes``)
DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: leaves per entries page
ENTRIES_PAGE = 1000
#: seconds a connection may sit idle (or a body trickle) before it is closed
IDLE_TIMEOUT = 10.0


class WitnessHTTPServer(ThreadingHTTPServer):
    """The witness's HTTP server (see the module docstring). Request threads are joined on
    :meth:`server_close`, so a stop lets the calls in flight finish."""

    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        witness: DirectoryWitness,
        logs: Mapping[str, LogKey],
        max_body_bytes: int = DEFAULT_MAX_BODY,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.witness = witness
        self.logs = dict(logs)
        self.by_hash = {hashlib.sha256(o.encode()).hexdigest(): k for o, k in logs.items()}
        self.max_body_bytes = max_body_bytes
        #: set when stopping: each answer then closes its connection
        self.stopping = False
        public = witness.public_key()
        self.cosigner_id = note.key_id(witness.name, public, note.COSIGNATURE_V1)
        super().__init__(address, WitnessHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        # an unexpected failure of one request: its type and stack, never its text (logs.py)
        log.error("witness request failed", exc_info=True)


def serve_until(server: WitnessHTTPServer, stop: threading.Event) -> None:
    """Serve until ``stop`` is set (by a signal handler), then stop accepting, let the calls in
    flight finish and close."""
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="witness-http")
    thread.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stopping = True
        server.shutdown()
        thread.join()
        server.server_close()


class WitnessHandler(BaseHTTPRequestHandler):
    """One connection (HTTP/1.1 keep-alive) of the witness server."""

    server: WitnessHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "vault-service-witness"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    # -- routing -----------------------------------------------------------------------------

    #: whether this request's body was read (a reply to a POST before it closes the connection:
    #: the unread body must not be taken for the next request)
    body_read = False

    def do_POST(self) -> None:
        self.body_read = False
        path, query = self._target()
        if path == wire.ADD_CHECKPOINT:
            self._add_checkpoint(with_entries=False)
        elif path == wire.ADD_WITH_ENTRIES:
            self._add_checkpoint(with_entries=True)
        elif path == wire.RESET:
            self._reset(query)
        else:
            self._not_post(path)

    def do_GET(self) -> None:
        path, query = self._target()
        monitored = self._monitored(path)
        if path == wire.LATEST:
            self._latest(query)
        elif path == wire.ENTRIES:
            self._entries(query)
        elif monitored is not None:
            held = self._held(monitored)
            if held == "":
                self._reply(404, "no checkpoint cosigned for this log\n")
            elif held is not None:
                self._reply(200, held, wire.NOTE_TYPE)
        elif path in (wire.ADD_CHECKPOINT, wire.ADD_WITH_ENTRIES, wire.RESET):
            self._reply(405, "use POST\n", allow="POST")
        else:
            self._reply(404, "no such endpoint\n")

    def _not_post(self, path: str) -> None:
        if path in (wire.LATEST, wire.ENTRIES) or self._monitored(path) is not None:
            self._reply(405, "use GET\n", allow="GET")
        else:
            self._reply(404, "no such endpoint\n")

    def _target(self) -> tuple[str, str]:
        parts = urllib.parse.urlsplit(self.path)
        return parts.path, parts.query

    def _monitored(self, path: str) -> LogKey | bool | None:
        """The log of a monitoring path ``/<origin hash>/checkpoint``; False for an unknown
        hash; None when the path is not one."""
        head, _, tail = path[1:].partition("/")
        if tail != "checkpoint" or len(head) != 64:
            return None
        return self.server.by_hash.get(head, False)

    # -- the endpoints -----------------------------------------------------------------------

    def _add_checkpoint(self, with_entries: bool) -> None:
        limit = self.server.max_body_bytes if with_entries else MAX_NOTE_BODY
        raw = self._body(limit)
        if raw is None:
            return
        try:
            req = wire.parse_add_checkpoint(raw, with_entries)
            parsed = note.open_note(req.note)
        except ValueError as exc:
            self._reply(400, f"malformed request: {exc}\n")
            return
        origin = parsed.text.split("\n", 1)[0]
        key = self.server.logs.get(origin)
        if key is None:
            self._reply(404, "unknown log: this witness does not witness that origin\n")
            return
        try:
            note.verify_note(req.note, origin, key.public_key)
        except NoteError:
            self._reply(403, "the checkpoint is not signed by the log's key\n")
            return
        try:
            checkpoint = Checkpoint.parse(parsed.text)
        except ValueError as exc:
            if parsed.text.split("\n")[1:2] == ["0"]:
                self._reply(422, "a checkpoint of size 0 has the empty tree's root\n")
            else:
                self._reply(400, f"malformed checkpoint: {exc}\n")
            return
        if req.old_size > checkpoint.size:
            self._reply(
                400,
                f"the old size {req.old_size} is above the checkpoint's size {checkpoint.size}"
                " (the log went back: rolled back)\n",
            )
            return
        if req.old_size == 0 and req.proof:
            self._reply(422, "a consistency proof from size 0 is empty\n")
            return
        self._cosign(key, req, checkpoint)

    def _cosign(self, key: LogKey, req: wire.AddCheckpoint, checkpoint: Checkpoint) -> None:
        witness = self.server.witness
        try:
            witness.latest(key)  # its own copy must verify (else 500, before any change)
        except WitnessRefused:
            self._reply(500, "the witness's own checkpoint of this log does not verify\n")
            return
        except WitnessUnavailable:
            self._reply(503, "the witness's storage is unavailable\n")
            return
        try:
            cosigned = witness.add_checkpoint(key, req.old_size, req.proof, req.note, req.entries)
        except WitnessConflict as conflict:
            self._reply(409, f"{conflict.held_size}\n", wire.SIZE_TYPE)
            return
        except WitnessRefused as refused:
            # kept in the log as possible evidence of a misbehaving log (tlog-witness allows it)
            log.warning(
                "checkpoint refused",
                extra=fields(origin=key.origin, old_size=req.old_size, size=checkpoint.size),
            )
            self._reply(422, f"{refused}\n")
            return
        except WitnessUnavailable:
            self._reply(503, "the witness's storage is unavailable\n")
            return
        own = [
            s.line()
            for s in note.open_note(cosigned).signatures
            if s.name == witness.name and s.key_id == self.server.cosigner_id
        ]
        self._reply(200, "".join(own), wire.SIGNATURE_TYPE)

    def _latest(self, query: str) -> None:
        params = self._params(query, ("origin",))
        if params is None:
            return
        key = self._log(params["origin"])
        if key is None:
            return
        held = self._held(key)
        if held == "":
            self._reply(204, "")
        elif held is not None:
            self._reply(200, held, wire.NOTE_TYPE)

    def _held(self, key: LogKey | bool) -> str | None:
        """The held note ("" when none); None after replying with an error."""
        if not isinstance(key, LogKey):
            self._reply(404, "no checkpoint cosigned for this log\n")
            return None
        try:
            held = self.server.witness.latest(key)
        except WitnessRefused:
            self._reply(500, "the witness's own checkpoint of this log does not verify\n")
            return None
        except WitnessUnavailable:
            self._reply(503, "the witness's storage is unavailable\n")
            return None
        return held.note if held else ""

    def _entries(self, query: str) -> None:
        params = self._params(query, ("origin", "start"))
        if params is None:
            return
        key = self._log(params["origin"])
        if key is None:
            return
        try:
            start = wire.parse_size(params["start"], "start")
        except wire.Malformed as exc:
            self._reply(400, f"{exc}\n")
            return
        try:
            page = self.server.witness.entries(key, start)[:ENTRIES_PAGE]
        except WitnessUnavailable:
            self._reply(503, "the witness's storage is unavailable\n")
            return
        self._reply(200, wire.encode_entries(page), wire.ENTRIES_TYPE)

    def _reset(self, query: str) -> None:
        params = self._params(query, ("origin",))
        if params is None:
            return
        key = self._log(params["origin"])
        if key is None:
            return
        raw = self._body(MAX_NOTE_BODY)
        if raw is None:
            return
        try:
            statement = raw.decode("utf-8")
            note.open_note(statement)
        except ValueError:
            self._reply(400, "malformed request: the body is a signed note\n")
            return
        try:
            note.verify_note(statement, key.origin, key.public_key)
        except NoteError:
            self._reply(403, "the reset is not signed by the log's key\n")
            return
        try:
            self.server.witness.reset(key, statement)
        except WitnessRefused as refused:
            self._reply(422, f"{refused}\n")
            return
        except WitnessUnavailable:
            self._reply(503, "the witness's storage is unavailable\n")
            return
        log.warning("log reset by a signed statement", extra=fields(origin=key.origin))
        self._reply(204, "")

    # -- requests and replies ----------------------------------------------------------------

    def _params(self, query: str, names: tuple[str, ...]) -> dict[str, str] | None:
        try:
            pairs = urllib.parse.parse_qsl(query, strict_parsing=bool(query), max_num_fields=4)
        except ValueError:
            pairs = []
        got = dict(pairs)
        if len(pairs) != len(names) or set(got) != set(names):
            self._reply(400, f"expected the query parameters {', '.join(names)} once each\n")
            return None
        return got

    def _log(self, origin: str) -> LogKey | None:
        key = self.server.logs.get(origin)
        if key is None:
            self._reply(404, "unknown log: this witness does not witness that origin\n")
        return key

    def _body(self, limit: int) -> bytes | None:
        """The request body (at most ``limit`` bytes), or None after replying with an error."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._reply(411, "send the body with a Content-Length\n", close=True)
            return None
        length = self.headers.get_all("Content-Length") or []
        if len(length) != 1 or not length[0].isascii() or not length[0].isdigit():
            self._reply(411, "send the body with one Content-Length\n", close=True)
            return None
        size = int(length[0])
        if size > limit:
            self._reply(413, f"the body is larger than {limit} bytes\n", close=True)
            return None
        try:
            raw = self.rfile.read(size)
        except OSError:  # the socket's timeout: a body that never came
            self.close_connection = True
            return None
        if len(raw) != size:
            self.close_connection = True
            return None
        self.body_read = True
        return raw

    def _reply(
        self,
        status: int,
        text: str,
        ctype: str = "text/plain; charset=utf-8",
        *,
        allow: str = "",
        close: bool = False,
    ) -> None:
        data = text.encode("utf-8")
        close = close or self.server.stopping or (self.command == "POST" and not self.body_read)
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    # -- logging: the request line's method and path, never a body ---------------------------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info(
            "witness request",
            extra=fields(
                method=self.command,
                path=self._target()[0][:200],
                status=code if isinstance(code, str) else int(code),
            ),
        )

    def log_message(self, format: str, *args: object) -> None:
        # the stdlib's own errors (a bad request line, a timeout): their fixed text only
        log.warning("witness request failed", extra=fields(reason=format[:80]))
