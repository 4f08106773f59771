"""The local registry: the Lambda handlers behind a real HTTP server, in one process.

``/v1/...`` requests become API Gateway events (:mod:`vmregistry.local.events`)
and go to the very ``lambda_handler`` each operation deploys as; if an
authorizer is configured it runs first, on the event API Gateway would give
it, and its context reaches the handler. ``/_data/...`` is the filesystem
backend's data plane (:mod:`vmregistry.local.dataplane`). Nothing else is served.
Several such processes can serve one socket: :mod:`vmregistry.local.workers`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import queue
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from vmregistry.config import Settings
from vmregistry.errors import RegistryError, error_body
from vmregistry.local.bodies import BodyError, ChunkedReader, LengthReader, read_all
from vmregistry.local.dataplane import DataPlane, Reply
from vmregistry.local.events import LambdaContext, build_event, split_response
from vmregistry.local.logs import access_log
from vmregistry.local.token_service import TOKEN_PATH, TokenService
from vmregistry.registry import Registry
from vmregistry.routes import Route, find_route
from vmregistry.runtime import configure
from vmregistry.storage import StorageError
from vmregistry.storage.factory import open_storage
from vmregistry.storage.filesystem import FilesystemStorage
from vmregistry.storage.signing import UrlSigner, request_origin
from vmregistry.verifiers import thread_verifier

__all__ = [
    "API_GATEWAY_MAX_BODY",
    "Authorizer",
    "LocalServer",
    "listen",
    "presign_secret",
    "public_url",
    "quiet_powertools",
]

log = logging.getLogger("vmregistry.local.server")

# API Gateway refuses request payloads over 10 MB before any Lambda runs.
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024
# An error answered before the body was read: read (and drop) up to this much of
# it first, so the client sees the answer instead of a reset connection.
DRAIN_LIMIT = 64 * 1024 * 1024
# How long a stopping server waits for the requests it is serving.
DRAIN_TIMEOUT = 8.0
UPLOAD_MAX_AGE = 24 * 3600
SWEEP_INTERVAL = 3600

# host[:port] as a client may put it in the Host header (names, IPv4, bracketed IPv6).
_HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def quiet_powertools() -> None:
    """Metrics and traces go to CloudWatch and X-Ray; locally they would be noise on stdout.

    Powertools reads these when a handler module is imported: call this first.
    """
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


def presign_secret() -> bytes:
    """The data plane's HMAC key: ``VMREGISTRY_PRESIGN_SECRET``, else fresh random bytes."""
    return os.environ.get("VMREGISTRY_PRESIGN_SECRET", "").encode() or secrets.token_bytes(32)


def public_url(listener: socket.socket) -> str:
    """The URL printed for ``listener``: a wildcard address is shown as the loopback one."""
    host, port = listener.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


Authorizer = Callable[[dict[str, Any]], Mapping[str, Any]]
"""Runs API Gateway's REQUEST authorizer step on an event: returns the context
to put under ``requestContext.authorizer`` or raises a 401/403 RegistryError."""


class _Exchange:
    """One data-plane request, as :class:`~vmregistry.local.dataplane.Exchange` sees it."""

    def __init__(self, handler: _Handler, operation: str, query: Mapping[str, str]) -> None:
        self.method: str = handler.command
        self.operation: str = operation
        self.query: Mapping[str, str] = query
        self.headers: Mapping[str, str] = {k.lower(): v for k, v in handler.headers.items()}
        self._handler = handler

    def body_reader(self) -> LengthReader | ChunkedReader | None:
        return self._handler.body_reader()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    # Large socket reads: the data plane pulls multi-GB bodies through readinto.
    rbufsize = 1024 * 1024
    _reader: LengthReader | ChunkedReader | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's stderr lines: every request is logged once, in :meth:`_finish`."""

    def body_reader(self) -> LengthReader | ChunkedReader | None:
        if self._reader is None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self._reader = ChunkedReader(self.rfile)
            else:
                raw = self.headers.get("Content-Length")
                if raw is None:
                    return None
                if not raw.isascii() or not raw.strip().isdigit():
                    raise RegistryError("BAD_REQUEST", "Content-Length must be a non-negative integer")
                self._reader = LengthReader(self.rfile, int(raw))
        return self._reader

    def _drain(self) -> None:
        """Read and drop what is left of a bounded body, so the error reaches the client."""
        try:
            reader = self.body_reader()
        except RegistryError:
            return
        if isinstance(reader, LengthReader) and 0 < reader.remaining <= DRAIN_LIMIT:
            buffer = memoryview(bytearray(1024 * 1024))
            with contextlib.suppress(BodyError, OSError):
                while reader.readinto(buffer):
                    pass

    def _dispatch(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        path = unquote(split.path)
        self._sent = 0
        self._reader = None
        self.server.begin()
        try:
            if path.startswith("/_data/") and self.server.dataplane is not None:
                query = dict(parse_qsl(split.query, keep_blank_values=True))
                reply = self.server.dataplane.handle(_Exchange(self, path.removeprefix("/_data/"), query))
                self._send_reply(reply)
            elif path == TOKEN_PATH and self.server.token_service is not None:  # the opt-in dev token endpoint
                asked = dict(self.headers.items())
                self._send(*self.server.token_service(self.command, path, split.query, asked, self._read_body()))
            else:
                status, headers, body = self._invoke(path, split.query)
                self._send(status, headers, body)
        except RegistryError as error:
            self._drain()
            self.close_connection = True  # the body may be partly unread: do not reuse the connection
            self._send(
                error.status, [("Content-Type", "application/json"), *error.headers.items()], error_body(error).encode()
            )
        except (BodyError, EOFError) as exc:
            self.close_connection = True
            incomplete = RegistryError("BLOB_UPLOAD_INVALID", f"the request body is incomplete: {exc}")
            self._send(incomplete.status, [("Content-Type", "application/json")], error_body(incomplete).encode())
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        finally:
            self.server.access_log(
                {
                    "method": self.command,
                    "path": path,
                    "status": getattr(self, "_status", 0),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "bytes": self._sent,
                    "client": self.client_address[0],
                }
            )
            self.server.end()

    def _invoke(self, path: str, query: str) -> tuple[int, list[tuple[str, str]], bytes]:
        found = find_route(self.command, path)
        if found is None:
            raise RegistryError("NOT_FOUND", f"no route for {path}", {"path": path[:300]})
        if found is False:
            raise RegistryError("UNSUPPORTED", f"{self.command} is not allowed on {path}")
        route, params = found
        body = self._read_body()
        event = build_event(
            route, params, self.command, path, query, self.headers.items(), body, self.client_address[0]
        )
        if self.server.origin_from_host:
            host = self.headers.get("Host", "")
            request_origin.set(f"http://{host}" if _HOST_RE.fullmatch(host) else None)
        if self.server.authorizer is not None:
            event["requestContext"]["authorizer"] = dict(self.server.authorizer(event))
        response = self.server.handler_for(route)(
            event, LambdaContext(route.operation, event["requestContext"]["requestId"])
        )
        return split_response(response)

    def _read_body(self) -> bytes:
        reader = self.body_reader()
        if reader is None:
            return b""
        if isinstance(reader, LengthReader) and reader.remaining > API_GATEWAY_MAX_BODY:
            raise RegistryError(
                "TOO_LARGE",
                f"request bodies are limited to {API_GATEWAY_MAX_BODY} bytes; send blobs with the upload flow",
            )
        try:
            return read_all(reader, API_GATEWAY_MAX_BODY)
        except BodyError as exc:
            raise RegistryError("TOO_LARGE", str(exc)) from None

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
            self._send(reply.status, list(reply.headers.items()), reply.body)
            return
        self._status = reply.status
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        path, offset, count = reply.file
        with open(path, "rb") as handle:
            self._sent = self.connection.sendfile(handle, offset, count)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch


class _AccessLog:
    """Request log lines, written by one thread: request threads only enqueue their fields.

    Why not log from the request thread: the handler formats, writes and flushes
    under its lock, and with many keep-alive connections the request threads
    queued on that lock (about a third of the GIL's time under ``wrk -c16`` on
    HEAD blob). Lines keep their order; one still queued when the process is
    killed is lost, as it would be in a buffered log file.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def __call__(self, fields: dict[str, Any]) -> None:
        self._queue.put(fields)

    def _run(self) -> None:
        while (fields := self._queue.get()) is not None:
            access_log.info("request", extra=fields)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)


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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    token_service: TokenService | None = None

    def __init__(
        self,
        listener: socket.socket,
        dataplane: DataPlane | None,
        authorizer: Authorizer | None,
    ) -> None:
        self.dataplane = dataplane
        self.authorizer = authorizer
        self.origin_from_host = False
        self._handlers: dict[str, Callable[..., dict[str, Any]]] = {}
        address = listener.getsockname()
        super().__init__(address[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = address
        self.server_name, self.server_port = str(address[0]), int(address[1])
        self.access_log = _AccessLog()
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

    def handler_for(self, route: Route) -> Callable[..., dict[str, Any]]:
        handler = self._handlers.get(route.operation)
        if handler is None:
            handler = importlib.import_module(route.module).lambda_handler
            self._handlers[route.operation] = handler
        return handler


class LocalServer:
    """Storage, data plane and HTTP server for one process, ready to serve.

    ``listener`` is a socket from :func:`listen` to serve on instead of binding
    ``host:port`` (a pre-forked worker gets its parent's); ``secret`` keys the
    data plane's URL signatures, so workers that share it accept each other's
    URLs. ``sweep`` runs the hourly upload sweep: one process of a group does.
    """

    def __init__(
        self,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 8080,
        authorizer: Authorizer | None = None,
        *,
        listener: socket.socket | None = None,
        secret: bytes | None = None,
        sweep: bool = True,
    ) -> None:
        quiet_powertools()
        self.settings = settings
        self.sweep = sweep
        listener = listener or listen(host, port)
        self.url = public_url(listener)
        self.port = int(listener.getsockname()[1])
        signer = UrlSigner(settings.public_url or self.url, secret or presign_secret())
        try:
            self.storage = open_storage(settings, signer)
        except BaseException:
            listener.close()
            raise
        self.httpd = _HTTPServer(listener, None, authorizer)
        if isinstance(self.storage, FilesystemStorage):
            self.httpd.dataplane = DataPlane(self.storage, signer)
        # Without a configured public URL, answer each client on the address it used.
        self.httpd.origin_from_host = settings.public_url is None
        self.registry = Registry(self.storage, settings, thread_verifier())
        configure(self.registry)
        self._stop = threading.Event()

    def sweep_uploads(self) -> None:
        try:
            swept = self.registry.uploads.sweep(UPLOAD_MAX_AGE)
        except StorageError as exc:
            log.warning("could not sweep abandoned uploads: %s", exc)
            return
        if swept:
            log.info("discarded %d upload sessions older than %d hours", swept, UPLOAD_MAX_AGE // 3600)

    def _sweeper(self) -> None:
        while not self._stop.wait(SWEEP_INTERVAL):
            self.sweep_uploads()

    def serve_forever(self) -> None:
        if self.sweep:
            self.sweep_uploads()
            threading.Thread(target=self._sweeper, name="upload-sweeper", daemon=True).start()
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self._stop.set()
            # Requests already being served finish (a push completing, a body arriving); the
            # supervisor's grace (workers.STOP_GRACE) is longer, so it need not kill a draining worker.
            unfinished = self.httpd.drain(DRAIN_TIMEOUT)
            if unfinished:
                log.warning("stopping with %d requests still being served", unfinished)
            self.httpd.server_close()

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests and embedding)."""
        thread = threading.Thread(target=self.serve_forever, name="vmregistry-server", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
