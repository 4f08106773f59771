"""A throwaway HTTP server on loopback that answers with a function: the servers a test plays itself.

An Auth Server of another kind, a web page on the port a user mistyped: each
is a function from the request (method, target, headers, body) to the answer
(status, headers, body), served on a free port for as long as the ``with``
lasts. ``Content-Length`` is added; nothing is logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Answer", "Answerer", "serving"]

Answer = tuple[int, list[tuple[str, str]], bytes]
Answerer = Callable[[str, str, dict[str, str], bytes], Answer]
"""``(method, target, headers, body) -> (status, headers, body)``."""


@contextmanager
def serving(answer: Answerer) -> Iterator[int]:
    """Serve ``answer`` on a free port of 127.0.0.1, in threads; yields the port."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, headers, sent = answer(self.command, self.path, dict(self.headers.items()), body)
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(sent)))
            self.end_headers()
            self.wfile.write(sent)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
