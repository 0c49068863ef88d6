"""moto's server with one request handled at a time: ``python moto_serial.py HOST PORT``.

moto checks a conditional PutObject (``If-None-Match``, ``If-Match``) and then stores the object
in two steps, and its server handles requests on threads, so two racing conditional writes can
both pass the check. S3 makes each conditional write atomic; so does this server, by handling
requests one at a time (connections still run on threads). The ledger's and the witness's
concurrency tests run against it: a lost race there is the code's, not the test server's.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:  # the whole response is built inside (moto's responses are not streamed)
            return list(app(environ, start_response))

    run_simple(host, port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
