"""A logging reverse proxy: what real OCI clients send a registry, and what it answers.

    python -m conformance.proxy --upstream http://127.0.0.1:5000 [--port 5001] [--log exchanges.jsonl]

Point a client (skopeo, podman, oras) at the proxy's port instead of the
registry's; every exchange is written as one JSON line: method, path and
query, request and response headers (``Authorization`` redacted to its
scheme), body sizes, status, duration, and the first bytes of JSON bodies
(manifests, indexes, error bodies, token answers). Bodies stream through in
both directions, fixed-length or chunked, so multi-GB blobs pass without being
held in memory. ``Location`` answers that name the upstream are rewritten to
the proxy, so the client keeps talking through it.

With ``--challenge`` the proxy plays a registry with Docker token auth in front
of an open one: a request without ``Authorization`` gets 401 and a
``WWW-Authenticate: Bearer realm=<proxy>/token,service=...,scope=repository:<name>:<actions>``
challenge, ``GET /token`` answers a dummy token (logging the scope and the
credentials' user the client sent), and authorized requests are forwarded
without the header. That shows how a client runs the token flow. It is a
development aid, not part of the registry.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlsplit

__all__ = ["ProxyHandler", "main", "serve"]

CHUNK = 1 << 20
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"})
NO_BODY_STATUSES = frozenset({204, 304})
SERVICE = "conformance-proxy"
_REPOSITORY = re.compile(r"/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")


def _redact(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in headers:
        shown = value.split(" ", 1)[0] + " ***" if key.lower() == "authorization" else value
        out.setdefault(key, []).append(shown)
    return out


def _covers(granted: list[str], needed: str) -> bool:
    """Do granted ``repository:<name>:<actions>`` scopes include every action of ``needed``?"""
    name, _, actions = needed.rpartition(":")
    held = {
        action
        for scope in granted
        if scope.rpartition(":")[0] == name
        for action in scope.rpartition(":")[2].split(",")
    }
    return set(actions.split(",")) <= held


def _chunks(stream: BufferedIOBase) -> Iterator[bytes]:
    """Decode a chunked request body from the client, one chunk at a time."""
    while True:
        size = int(stream.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            return
        data = stream.read(size)
        stream.readline(1024)
        yield data


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: str = ""
    challenge: bool = False
    insufficient_status: int = 401
    json_preview: int = 2048
    """How many bytes of a JSON body are logged (manifests reach 4 MiB)."""
    log_stream: TextIO = sys.stdout
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass  # one JSON line per exchange instead

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        with self.lock:
            entry = {"time": round(time.time(), 3), "method": self.command, "path": self.path, "status": status}
            entry["request_headers"] = _redact(list(self.headers.items()))
            authorization = self.headers.get("Authorization", "")
            if authorization.lower().startswith("basic "):
                user = base64.b64decode(authorization[6:]).split(b":", 1)[0].decode("utf-8", "replace")
                entry["basic_user"] = user
            entry["response_headers"] = {k: [v] for k, v in headers.items()}
            self.log_stream.write(json.dumps(entry) + "\n")
            self.log_stream.flush()

    def _challenged(self) -> bool:
        """Play the token flow; True when this request was answered here.

        A token is ``dev.<base64 of the scopes asked for>``, so a request whose token lacks
        the actions it needs is challenged again (``error="insufficient_scope"``) with
        ``--insufficient-status`` (401 as distribution does, or 403): that shows whether and
        when a client asks for a wider token.
        """
        url = urlsplit(self.path)
        if url.path == "/token":
            scopes = " ".join(v for k, v in parse_qsl(url.query) if k == "scope")
            token = "dev." + base64.urlsafe_b64encode(scopes.encode()).decode()
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self._answer(200, {"Content-Type": "application/json"}, body)
            return True
        found = _REPOSITORY.match(url.path)
        scope = ""
        if found:
            actions = "pull" if self.command in ("GET", "HEAD") else "pull,push"
            scope = f"repository:{found.group(1)}:{actions}"
        authorization = self.headers.get("Authorization", "")
        error = ""
        if authorization.lower().startswith("bearer dev."):
            granted = base64.urlsafe_b64decode(authorization[11:]).decode().split()
            if not scope or _covers(granted, scope):
                del self.headers["Authorization"]
                return False
            error = ',error="insufficient_scope"'
        realm = f"http://{self.headers.get('Host', '')}/token"
        value = f'Bearer realm="{realm}",service="{SERVICE}"' + (f',scope="{scope}"' if scope else "") + error
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}'
        self._answer(
            self.insufficient_status if error else 401,
            {"WWW-Authenticate": value, "Content-Type": "application/json"},
            body,
        )
        if self.headers.get("Content-Length") or "chunked" in self.headers.get("Transfer-Encoding", ""):
            self.close_connection = True  # the body was not read
        return True

    def _forward(self) -> None:
        if self.challenge and self._challenged():
            return
        started = time.monotonic()
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=600)
        # A list, not a dict: clients repeat headers (Go sends one Accept line per media type).
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"]
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        sent = 0
        preview = b""
        connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", target.netloc)
        for key, value in headers:
            connection.putheader(key, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for piece in _chunks(self.rfile) if chunked else self._fixed(length):
            sent += len(piece)
            if len(preview) < self.json_preview:
                preview += piece[: self.json_preview - len(preview)]
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        out_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        self.send_response(response.status, response.reason)
        for key, value in out_headers:
            if key.lower() == "location" and value.startswith(self.upstream):
                value = f"http://{self.headers.get('Host', '')}{value[len(self.upstream) :]}"
            self.send_header(key, value)
        has_body = self.command != "HEAD" and response.status not in NO_BODY_STATUSES
        relay_chunked = has_body and response.getheader("Content-Length") is None
        if relay_chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        received, answer = 0, b""
        while has_body and (piece := response.read(CHUNK)):
            received += len(piece)
            if len(answer) < self.json_preview:
                answer += piece[: self.json_preview - len(answer)]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if relay_chunked else piece)
        if relay_chunked:
            self.wfile.write(b"0\r\n\r\n")
        declared = response.getheader("Content-Length")
        if has_body and declared is not None and int(declared) != received:
            self.close_connection = True  # the upstream sent a short body: let the client see the EOF
        connection.close()
        self._record(started, response, out_headers, sent, preview, received, answer)

    def _fixed(self, length: int) -> Iterator[bytes]:
        left = length
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def _record(
        self,
        started: float,
        response: http.client.HTTPResponse,
        out_headers: list[tuple[str, str]],
        sent: int,
        preview: bytes,
        received: int,
        answer: bytes,
    ) -> None:
        def text(data: bytes, content_type: str | None) -> str | None:
            return data.decode("utf-8", "replace") if data and content_type and "json" in content_type else None

        entry = {
            "time": round(time.time(), 3),
            "ms": round((time.monotonic() - started) * 1000, 1),
            "method": self.command,
            "path": self.path,
            "request_headers": _redact(list(self.headers.items())),
            "request_bytes": sent,
            "request_json": text(preview, self.headers.get("Content-Type")),
            "status": response.status,
            "response_headers": _redact(out_headers),
            "response_bytes": received,
            "response_json": text(answer, response.getheader("Content-Type")),
        }
        with self.lock:
            self.log_stream.write(json.dumps(entry) + "\n")
            self.log_stream.flush()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward


def serve(
    upstream: str,
    port: int,
    log: TextIO,
    *,
    challenge: bool = False,
    insufficient_status: int = 401,
    json_preview: int = 2048,
) -> ThreadingHTTPServer:
    """A proxy to ``upstream`` on ``127.0.0.1:port`` (0: any free port); call ``serve_forever``."""
    attributes = {
        "upstream": upstream.rstrip("/"),
        "log_stream": log,
        "challenge": challenge,
        "insufficient_status": insufficient_status,
        "json_preview": json_preview,
    }
    handler = type("Handler", (ProxyHandler,), attributes)
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="registry base URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="file for the JSON lines (default: stdout)")
    parser.add_argument("--challenge", action="store_true", help="demand Docker token auth (dummy tokens)")
    parser.add_argument("--insufficient-status", type=int, default=401, choices=(401, 403))
    parser.add_argument("--json-preview", type=int, default=2048, help="bytes of each JSON body to log")
    args = parser.parse_args(argv)
    log = open(args.log, "a") if args.log else sys.stdout  # noqa: SIM115 - open for the server's lifetime
    server = serve(
        args.upstream,
        args.port,
        log,
        challenge=args.challenge,
        insufficient_status=args.insufficient_status,
        json_preview=args.json_preview,
    )
    print(f"proxy on http://127.0.0.1:{server.server_address[1]} -> {args.upstream}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if log is not sys.stdout:
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
