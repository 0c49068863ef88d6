"""h2load (nghttp2's HTTP/2 load generator, written in C; Debian package nghttp2-client) sending raw
gRPC unary calls: a load that takes a small share of the cores the server runs on, beside the
Python client of benchmarks/load_client.py.

The contract:

- :func:`grpc_frame` is the body of a gRPC unary request: a 5-byte prefix (compressed flag 0, the
  message length as 4 big-endian bytes) and the serialized message. :func:`grpc_call` makes one
  such call through grpcio first (it raises if that call fails) and returns a :class:`Call`: the
  method path, the body, and the size of the framed response that call received.
- :func:`run_h2load` posts the body ``n`` times (``-n``; ``-c`` connections, ``-m`` streams per
  connection, optionally paced by ``--rps`` per connection) with the headers of a gRPC call and
  returns h2load's counts, its rate and the per-request times of its ``--log-file``.
- :func:`check` raises :class:`CallsFailed` unless all ``n`` calls succeeded *as gRPC calls*. h2load
  counts every HTTP 200 as a success, but gRPC errors are HTTP 200 too, with ``grpc-status`` != 0.
  A gRPC server answers a failed unary call "trailers-only" (the status in the one HEADERS frame,
  no DATA frame), so ``n`` successes received exactly ``n`` x the response size in DATA bytes, and
  any failure shows as fewer. (``h2load -v`` prints a response's headers but not its trailers, so
  ``grpc-status: 0`` cannot be read there.) The size must not vary between successful calls: it
  does not for the vault's and the echo's Put (a fixed-length record id) and Get (one record).
- One body per run: h2load posts the same ``-d`` file with every request (it cycles over URIs, not
  bodies), so a Get reads one record id over and over, and a Put writes every record to one
  subject.
- Warm-up is a separate ``-n`` run rather than ``--warm-up-time``: in timing-based mode (``-D``)
  h2load's byte counters include the warm-up's traffic, which would break the exact check.
- Latency is h2load's, from the moment a request's stream is submitted. Paced by ``--rps``, h2load
  holds requests it cannot submit (all ``-m`` streams busy) in a queue whose wait it does not
  count; :meth:`H2loadResult.p99_from_schedule_ms` measures from an evenly spaced schedule instead,
  the figure to use when the pace was not held (coordinated omission).
"""

from __future__ import annotations

import re
import shutil
import statistics
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import Message

CLIENTS = 8  # connections (as load_client's CHANNELS) ...
STREAMS = 8  # ... x streams each: 64 calls in flight, as load_client's CONCURRENCY


class CallsFailed(RuntimeError):
    """h2load's run had calls that did not succeed as gRPC calls (or did not finish)."""


@dataclass(frozen=True)
class Call:
    """A gRPC unary call for h2load: method path, framed request, framed response size."""

    path: str
    body: bytes
    response_size: int


@dataclass(frozen=True)
class Summary:
    """The summary h2load prints at the end of a run."""

    total: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    data_bytes: int
    seconds: float  # "finished in"
    rate: float  # h2load's req/s


@dataclass(frozen=True)
class H2loadResult:
    """One h2load run: its summary and its per-request log, in microseconds."""

    summary: Summary
    starts_us: tuple[int, ...]  # --log-file: start of each request, µs since the epoch ...
    statuses: tuple[int, ...]  # ... its HTTP status (-1: the stream failed) ...
    elapsed_us: tuple[int, ...]  # ... and its time to the end of the response

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.elapsed_us) / 1000

    @property
    def p99_ms(self) -> float:
        return _p99(sorted(self.elapsed_us)) / 1000

    def p99_from_schedule_ms(self, rate: float) -> float:
        """p99 of each request's latency measured from its slot in a schedule of ``rate`` calls/s
        starting at the first request (never less than the latency h2load measured)."""
        order = sorted(range(len(self.starts_us)), key=self.starts_us.__getitem__)
        t0 = self.starts_us[order[0]]
        late = [
            max(self.elapsed_us[k], self.starts_us[k] + self.elapsed_us[k] - (t0 + i * 1e6 / rate))
            for i, k in enumerate(order)
        ]
        return _p99(sorted(late)) / 1000


def _p99(ordered: list[float] | list[int]) -> float:
    return float(ordered[int(0.99 * (len(ordered) - 1))])  # load_client's convention


def grpc_frame(message: Message) -> bytes:
    """The length-prefixed gRPC frame of ``message`` (uncompressed)."""
    data = message.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def grpc_call(addr: str, path: str, message: Message, token: str = "") -> Call:
    """The :class:`Call` of ``message`` to ``path`` on ``addr``, after one call through grpcio with
    the same bytes (raises ``grpc.RpcError`` if it fails; a Put's call writes one record)."""
    with grpc.insecure_channel(addr) as channel:
        method = channel.unary_unary(path, None, None)  # no serializers: bytes in, bytes out
        response: bytes = method(message.SerializeToString(), metadata=_metadata(token), timeout=30)
    return Call(path, grpc_frame(message), 5 + len(response))


def h2load_binary() -> str:
    """The path of h2load, or RuntimeError saying how to install it."""
    path = shutil.which("h2load")
    if path is None:
        raise RuntimeError("h2load is missing: install Debian's nghttp2-client (tools/system_deps.sh)")
    return path


def run_h2load(
    addr: str,
    call: Call,
    n: int,
    *,
    token: str = "",
    clients: int = CLIENTS,
    streams: int = STREAMS,
    rps: float | None = None,
    timeout: float = 600,
) -> H2loadResult:
    """Run h2load: ``n`` posts of ``call`` to ``addr`` (host:port, h2c) over ``clients``
    connections with at most ``streams`` in flight on each; ``rps``: requests per second per
    connection (paced). Does not check the calls (see :func:`check`)."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        body, log = Path(tmp) / "body.bin", Path(tmp) / "log.tsv"
        body.write_bytes(call.body)
        args = [
            *(h2load_binary(), "-n", str(n), "-c", str(clients), "-m", str(streams)),
            *("-d", str(body), "--log-file", str(log)),
            *("-H", "content-type: application/grpc", "-H", "te: trailers"),
            *(("-H", f"authorization: Bearer {token}") if token else ()),
            *(("--rps", f"{rps:g}") if rps else ()),
            f"http://{addr}{call.path}",
        ]
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"h2load exited {out.returncode}: {out.stderr.strip() or out.stdout}")
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    summary = parse_output(out.stdout)
    return H2loadResult(
        summary,
        starts_us=tuple(int(r[0]) for r in rows),
        statuses=tuple(int(r[1]) for r in rows),
        elapsed_us=tuple(int(r[2]) for r in rows),
    )


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req/s", re.M)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.M,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.M)
_DATA = re.compile(r"^traffic: .*\((\d+)\) data", re.M)


def parse_output(text: str) -> Summary:
    """The summary of h2load's standard output (1.52's format): ValueError if a line is missing."""
    found = [p.search(text) for p in (_FINISHED, _REQUESTS, _STATUS, _DATA)]
    if not all(found):
        raise ValueError(f"not h2load's summary:\n{text}")
    finished, requests, status, data = found
    assert finished and requests and status and data
    total, done, ok, failed, errored, timeout = (int(g) for g in requests.groups())
    return Summary(
        total=total,
        done=done,
        succeeded=ok,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=int(status.group(1)),
        data_bytes=int(data.group(1)),
        seconds=float(finished.group(1)) * _UNITS[finished.group(2)],
        rate=float(finished.group(3)),
    )


def check(result: H2loadResult, call: Call, n: int) -> None:
    """Raise :class:`CallsFailed` unless all ``n`` calls of ``call`` finished with HTTP 200 and
    each received one response of ``call.response_size`` bytes (a gRPC error has none)."""
    s = result.summary
    problems = []
    if not s.total == s.done == s.succeeded == s.status_2xx == n:
        problems.append(
            f"{n} calls sent, {s.done} done, {s.succeeded} succeeded, {s.failed} failed, "
            f"{s.errored} errored, {s.timeout} timed out, {s.status_2xx} 2xx"
        )
    if len(result.statuses) != n or any(s != 200 for s in result.statuses):
        problems.append(f"the log has {len(result.statuses)} requests, not all HTTP 200")
    expected = n * call.response_size
    if s.data_bytes != expected:
        missing = (expected - s.data_bytes) / call.response_size
        problems.append(
            f"{s.data_bytes} response bytes instead of {expected}: about {missing:.0f} calls "
            "got no response message (a grpc-status != 0)"
        )
    if problems:
        raise CallsFailed(f"h2load {call.path}: " + "; ".join(problems))


def load(
    addr: str,
    call: Call,
    n: int,
    *,
    token: str = "",
    clients: int = CLIENTS,
    streams: int = STREAMS,
    rps: float | None = None,
) -> H2loadResult:
    """:func:`run_h2load` then :func:`check`: a result only if every call succeeded."""
    result = run_h2load(addr, call, n, token=token, clients=clients, streams=streams, rps=rps)
    check(result, call, n)
    return result
