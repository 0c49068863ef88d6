"""The vault's side of a witness process: :class:`HttpWitness` speaks c2sp.org/tlog-witness and
this vault's extensions (:mod:`.witness_http`, docs/audit.md) with urllib.

Nothing the server says is trusted beyond what can be checked: the witness's public key and
name come from the config, and a cosignature line that does not verify against them is not
taken (a 200 without one is :class:`WitnessUnavailable`: an answer not from the configured
witness is no witness at all); a held note must carry the log's signature and that cosignature.

How answers map to the :class:`Witness` interface: 409 is :class:`WitnessConflict` with the held
size; 400, 403 and 422 are :class:`WitnessRefused` with the witness's one-line reason (printable,
at most 200 characters); a connection error, a timeout, a 404 (the witness does not know this
log: a configuration error, not evidence of a fork), a 413, a 5xx or any answer that does not
parse is :class:`WitnessUnavailable`. Redirects are not followed and no proxy from the
environment is used (the witness is reached directly, on a private network).
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from vault_service.audit import witness_wire as wire
from vault_service.audit.witness import (
    Held,
    LogKey,
    Witness,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
)
from vault_service.tlog import note
from vault_service.tlog.note import Checkpoint

#: the largest answer read (a page of entries, a note)
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_MAX_REASON = 200


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    body: bytes

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WitnessUnavailable("the witness's answer is not UTF-8") from None

    def reason(self) -> str:
        line = self.body.decode("utf-8", "replace").split("\n", 1)[0]
        line = "".join(c for c in line if c.isprintable())[:_MAX_REASON]
        return line or f"HTTP {self.status}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class HttpWitness(Witness):
    """A witness process at ``url`` (see the module docstring); ``public_key`` and ``name`` are
    the witness's own, from the config. ValueError for a URL that is not ``http(s)://host[:port]
    [/prefix]`` or a key that is not 32 bytes."""

    def __init__(self, url: str, name: str, public_key: bytes, timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - ValueError for a port that is not a number
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ValueError("expected http://host:port or https://host:port (and a path prefix)")
        if len(public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        if not timeout > 0:
            raise ValueError("the timeout is > 0 seconds")
        self.url = url.rstrip("/")
        self.name = name
        self._public_key = public_key
        self._key_id = note.key_id(name, public_key, note.COSIGNATURE_V1)
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())

    def __repr__(self) -> str:
        return f"HttpWitness({self.url!r})"

    def public_key(self) -> bytes:
        return self._public_key

    # -- the interface -----------------------------------------------------------------------

    def latest(self, log: LogKey) -> Held | None:
        answer = self._call("GET", wire.LATEST, {"origin": log.origin})
        if answer.status == 204:
            return None
        if answer.status != 200:
            self._fail(answer)
        text = answer.text()
        try:
            checkpoint = note.open_checkpoint(text, log.origin, log.public_key)
            note.verify_cosignature(text, self.name, self._public_key)
        except ValueError:
            raise WitnessUnavailable(
                "the witness's checkpoint does not verify against the log's and the witness's keys"
            ) from None
        return Held(checkpoint, text)

    def add_checkpoint(
        self,
        log: LogKey,
        old_size: int,
        proof: Sequence[bytes],
        signed_note: str,
        entries: Sequence[bytes] | None = None,
    ) -> str:
        body = wire.encode_add_checkpoint(old_size, proof, signed_note, entries)
        path = wire.ADD_CHECKPOINT if entries is None else wire.ADD_WITH_ENTRIES
        answer = self._call("POST", path, None, body)
        if answer.status == 409:
            try:
                if answer.content_type != wire.SIZE_TYPE or not answer.text().endswith("\n"):
                    raise wire.Malformed("not a size")
                held = wire.parse_size(answer.text()[:-1])
            except wire.Malformed:
                raise WitnessUnavailable("the witness's 409 does not name a size") from None
            raise WitnessConflict(held)
        if answer.status != 200:
            self._fail(answer)
        return self._cosigned(signed_note, answer.text())

    def entries(self, log: LogKey, start: int) -> list[bytes]:
        out: list[bytes] = []
        while True:
            query = {"origin": log.origin, "start": str(start + len(out))}
            answer = self._call("GET", wire.ENTRIES, query)
            if answer.status != 200:
                self._fail(answer)
            try:
                page = wire.parse_entries(answer.text())
            except wire.Malformed:
                raise WitnessUnavailable("the witness's entries do not parse") from None
            if not page:
                return out
            out.extend(page)

    def reset(self, log: LogKey, statement: str) -> None:
        answer = self._call("POST", wire.RESET, {"origin": log.origin}, statement.encode("utf-8"))
        if answer.status != 204:
            self._fail(answer)

    # -- HTTP --------------------------------------------------------------------------------

    def _cosigned(self, signed_note: str, response: str) -> str:
        """``signed_note`` with the witness's cosignature line(s) of ``response``, each verified
        against the configured key; lines by other keys are ignored (tlog-witness)."""
        try:
            answered = note.add_signature_lines(signed_note, wire.parse_signature_lines(response))
            ours = [
                sig.line()
                for sig in note.open_note(answered).signatures
                if sig.name == self.name and sig.key_id == self._key_id
            ]
            if not ours:
                raise ValueError("no cosignature by the configured witness key")
            cosigned = note.add_signature_lines(signed_note, ours)
            note.verify_cosignature(cosigned, self.name, self._public_key)
            Checkpoint.parse(note.open_note(cosigned).text)
        except ValueError:
            raise WitnessUnavailable(
                "the witness's answer carries no valid cosignature by the configured key"
            ) from None
        return cosigned

    def _fail(self, answer: _Answer) -> NoReturn:
        if answer.status in (400, 403, 422):
            raise WitnessRefused(answer.reason())
        if answer.status == 404:
            raise WitnessUnavailable(f"the witness does not witness this log ({answer.reason()})")
        raise WitnessUnavailable(f"the witness answered {answer.status}: {answer.reason()}")

    def _call(
        self, method: str, path: str, query: dict[str, str] | None, body: bytes | None = None
    ) -> _Answer:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Content-Type": "text/plain; charset=utf-8"} if body is not None else {}
        # the scheme is http or https (checked in __init__)
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
        try:
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return _Answer(response.status, response.headers.get_content_type(), _read(response))
            except urllib.error.HTTPError as error:
                with error:
                    ctype = error.headers.get_content_type() if error.headers else ""
                    return _Answer(error.code, ctype, _read(error))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # URLError (refused, unreachable, DNS) and timeouts are OSErrors
            raise WitnessUnavailable(f"witness unreachable ({type(exc).__name__})") from None


def _read(response: object) -> bytes:
    data: bytes = response.read(MAX_RESPONSE_BYTES + 1)  # type: ignore[attr-defined]
    if len(data) > MAX_RESPONSE_BYTES:
        raise WitnessUnavailable("the witness's answer is too large")
    return data
