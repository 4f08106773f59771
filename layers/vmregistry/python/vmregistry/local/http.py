"""The local server's HTTP layer: a threading HTTP/1.1 server that hands each request to an application.

It knows nothing of the registry: it parses requests, offers the body as a
stream (fixed length or chunked, :mod:`vmregistry.local.bodies`), sends the
application's :class:`Reply` (a body, or a file region through zero-copy
``sendfile``), turns a :class:`~vmregistry.errors.RegistryError` into the
registry's JSON error, logs every request once, and stops gracefully: a
stopping server finishes the requests it is serving (bounded), answering them
with ``Connection: close``. Several processes may serve one listening socket
(:func:`listen`, :mod:`vmregistry.local.workers`).

Framing is checked before the application sees a request, because a proxy in
front may read it differently (request smuggling): ``Content-Length`` headers
that disagree, a ``Transfer-Encoding`` other than ``chunked``, or both headers
at once are a 400 and the connection is closed. ``Expect: 100-continue`` is
answered only when the application first asks for the body
(:meth:`Exchange.body_reader`), so whatever it refuses before (an unknown
route, a missing token, a bad name) reaches the client before the body is
sent. A connection idle for :data:`IDLE_TIMEOUT` seconds, between requests or
in the middle of a body, is closed: so a temporary file that has not grown for
longer than that belongs to no request (:meth:`FilesystemStorage.sweep_temporary
<vmregistry.storage.filesystem.FilesystemStorage.sweep_temporary>`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from vmregistry.errors import RegistryError, error_body
from vmregistry.local.bodies import BodyError, BodyTooLarge, ChunkedReader, LengthReader
from vmregistry.local.logs import AccessLogWriter

__all__ = ["IDLE_TIMEOUT", "Application", "Exchange", "HTTPServer", "Reply", "listen", "public_url"]

log = logging.getLogger("vmregistry.local.server")

# An error answered before the body was read: read (and drop) up to this much of
# it first, so the client sees the answer instead of a reset connection.
DRAIN_LIMIT = 64 * 1024 * 1024

IDLE_TIMEOUT = 120
"""Seconds a connection may send nothing (S3 gives up on a silent upload after about 20)."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: tuple[str, int, int] | None = None
    """(path, offset, count) to send with sendfile after the headers."""


class Exchange:
    """One request as an application sees it: method, path, query, headers and a body stream."""

    def __init__(self, handler: RequestHandler, path: str, query: str) -> None:
        self.method: str = handler.command
        self.path = path
        self.query_string = query
        self.header_items: list[tuple[str, str]] = list(handler.headers.items())
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in self.header_items}
        self.client: str = handler.client_address[0]
        self._handler = handler

    @property
    def has_body(self) -> bool:
        """Does the request declare a body (without asking the client to send it)?"""
        chunked, length = self._handler._framing()
        return chunked or bool(length)

    def body_reader(self) -> LengthReader | ChunkedReader | None:
        """The body as a stream, or ``None`` when the request declares none.

        The first call is where a client that sent ``Expect: 100-continue``
        is told to go on: ask for the body only once the request is accepted.
        """
        return self._handler.body_reader()


class Application(Protocol):
    def __call__(self, exchange: Exchange) -> Reply: ...


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HTTPServer
    # Large socket reads: the data plane pulls multi-GB bodies through readinto.
    rbufsize = 1024 * 1024
    timeout = IDLE_TIMEOUT
    _reader: LengthReader | ChunkedReader | None = None
    _continue_owed = False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's stderr lines: every request is logged once, in :meth:`_dispatch`."""

    def handle_expect_100(self) -> bool:
        """Owe the ``100 Continue`` until the application asks for the body (the stdlib sends it at once)."""
        self._continue_owed = True
        return True

    def _framing(self) -> tuple[bool, int | None]:
        """(chunked, Content-Length) of the request; 400 for framing a proxy could read another way."""
        encodings = [v.strip().lower() for v in self.headers.get_all("Transfer-Encoding", []) for v in v.split(",")]
        lengths = {v.strip() for v in self.headers.get_all("Content-Length", [])}
        if encodings and encodings != ["chunked"]:
            raise RegistryError("BAD_REQUEST", "the only Transfer-Encoding accepted is chunked")
        if encodings and lengths:
            raise RegistryError("BAD_REQUEST", "a request may not carry both Transfer-Encoding and Content-Length")
        if len(lengths) > 1:
            raise RegistryError("BAD_REQUEST", "the request carries Content-Length headers that disagree")
        if not lengths:
            return bool(encodings), None
        raw = lengths.pop()
        if not raw.isascii() or not raw.isdigit():
            raise RegistryError("BAD_REQUEST", "Content-Length must be a non-negative integer")
        return False, int(raw)

    def body_reader(self) -> LengthReader | ChunkedReader | None:
        if self._reader is None:
            chunked, length = self._framing()
            if chunked:
                self._reader = ChunkedReader(self.rfile)
            elif length is None:
                return None
            else:
                self._reader = LengthReader(self.rfile, length)
            if self._continue_owed:
                self._continue_owed = False
                self.send_response_only(100)
                self.end_headers()
        return self._reader

    def _body_left(self) -> bool:
        """Is part of a declared body still unread (so the connection cannot carry another request)?"""
        if self._reader is not None:
            return not self._reader.done
        try:
            chunked, length = self._framing()
        except RegistryError:
            return True
        return chunked or bool(length)

    def _drain(self) -> None:
        """Read and drop what is left of a bounded body, so the error reaches the client."""
        if self._continue_owed:
            return  # the client waits for our word before sending the body: it gets the error instead
        try:
            reader = self.body_reader()
        except RegistryError:
            return
        if reader is None or (isinstance(reader, LengthReader) and reader.remaining > DRAIN_LIMIT):
            return
        buffer = memoryview(bytearray(1024 * 1024))
        drained = 0
        with contextlib.suppress(BodyError, OSError):
            while drained <= DRAIN_LIMIT and (n := reader.readinto(buffer)):
                drained += n

    def _dispatch(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        path = unquote(split.path)
        self._sent = 0
        self._status = 0
        self._reader = None
        self.server.begin()
        try:
            self._framing()
            reply = self.server.app(Exchange(self, path, split.query))
            if self._body_left():  # refused before its body (an admission check): let the client read why
                self._drain()
                self.close_connection = True  # the unread rest of the body is not the next request
            self._send_reply(reply)
        except RegistryError as error:
            self._drain()
            self.close_connection = True  # the body may be partly unread: do not reuse the connection
            self._send_error(error)
        except (BodyError, EOFError) as exc:
            self.close_connection = True
            self._send_error(RegistryError("BAD_REQUEST", f"the request body is incomplete or malformed: {exc}"))
        except BodyTooLarge as exc:
            self.close_connection = True
            self._send_error(RegistryError("TOO_LARGE", str(exc)))
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        finally:
            self._continue_owed = False  # parse_request sets it again for a next request that expects it
            self.server.access_log(
                {
                    "method": self.command,
                    "path": path,
                    "status": self._status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "bytes": self._sent,
                    "client": self.client_address[0],
                }
            )
            self.server.end()

    def _send_error(self, error: RegistryError) -> None:
        headers = [("Content-Type", "application/json"), *error.headers.items()]
        self._send(error.status, headers, error_body(error).encode())

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if self.server.stopping:
            self.close_connection = True  # the client must take its next request elsewhere
        self._status = status
        self.send_response(status)
        names = {k.lower() for k, _ in headers}
        for key, value in headers:
            if key.lower() == "content-length" and self.command != "HEAD":
                continue  # the real body decides below; HEAD keeps the handler's value
            self.send_header(key, value)
        if self.command != "HEAD" or "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self._sent = len(body)

    def _send_reply(self, reply: Reply) -> None:
        if reply.file is None:
            self._send(reply.status, reply.headers, reply.body)
            return
        self._status = reply.status
        self.send_response(reply.status)
        for key, value in reply.headers:
            self.send_header(key, value)
        self.end_headers()
        path, offset, count = reply.file
        if count == 0:
            return  # an empty object (sendfile refuses a count of 0)
        with open(path, "rb") as handle:
            self._sent = self.connection.sendfile(handle, offset, count)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``0`` picks a free port).

    Bound apart from the HTTP server so that pre-forked workers
    (:mod:`vmregistry.local.workers`) can all accept on the one socket their
    parent bound. Non-blocking: when several processes wake for one
    connection, the losers' ``accept`` fails at once and they go back to waiting.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=128)
    # Accepted sockets inherit it: answers are small writes that must not wait for Nagle.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.setblocking(False)
    return listener


def public_url(listener: socket.socket) -> str:
    """The URL printed for ``listener``: a wildcard address is shown as the loopback one."""
    host, port = listener.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class HTTPServer(ThreadingHTTPServer):
    """A thread per connection on an already listening socket; counts requests in flight to stop gracefully."""

    daemon_threads = True

    def __init__(self, listener: socket.socket, app: Application) -> None:
        self.app = app
        address = listener.getsockname()
        super().__init__(address[:2], RequestHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = address
        self.server_name, self.server_port = str(address[0]), int(address[1])
        self.access_log = AccessLogWriter()
        self.stopping = False
        self._in_flight = 0
        self._settled = threading.Condition(threading.Lock())

    def begin(self) -> None:
        with self._settled:
            self._in_flight += 1

    def end(self) -> None:
        with self._settled:
            self._in_flight -= 1
            if not self._in_flight:
                self._settled.notify_all()

    def drain(self, timeout: float) -> int:
        """Wait until no request is being served (idle keep-alive connections do not count); how many still are."""
        self.stopping = True
        with self._settled:
            if self._in_flight:
                log.info("finishing %d requests in progress before stopping", self._in_flight)
            self._settled.wait_for(lambda: not self._in_flight, timeout)
            return self._in_flight

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        connection.setblocking(True)  # the listener is non-blocking; request threads read blocking
        return connection, address

    def server_close(self) -> None:
        super().server_close()
        self.access_log.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report a failure outside a request's dispatch through the log, as one record.

        The stdlib prints these to stderr in pieces, which other threads' (and
        other workers') lines then split. A client that closed or reset its
        keep-alive connection (wrk at the end of every run) is not a failure.
        """
        if isinstance(sys.exception(), ConnectionError | TimeoutError):
            return
        log.exception("unexpected error serving %s", client_address[0] if client_address else "?")
