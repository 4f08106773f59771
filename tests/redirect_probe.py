"""What HTTP clients do when a PUT with a body is answered ``307`` to a presigned PUT URL (issue 16).

Run ``python -m tests.redirect_probe`` for the table docs/api.md reports; the
tests in ``test_redirected_put.py`` check the rows for the clients every
machine here has (curl, Python's standard library). A real data plane (the
local server's, which checks the SHA-256 bound into the URL like S3) is the
redirect's target, so "stored" means the bytes really landed under the URL.

The redirecting server plays the registry in two ways:

* ``early``: it answers ``307`` as soon as it has the request's head when the
  client sent ``Expect: 100-continue`` (instead of ``100 Continue``), and after
  reading the body otherwise: the best any server can do.
* ``after-body``: it reads the whole body first, then answers ``307``: what
  API Gateway in front of Lambda would do (it buffers the body before any
  code runs), if it could carry the body at all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from vmregistry.config import Settings
from vmregistry.local.app import LocalServer

__all__ = ["Probe", "probe"]

BODY_SIZE = 12 * 1024 * 1024


class Probe:
    """A data plane, one presigned URL per attempt, and a redirector in front of it."""

    def __init__(self, root: Path, mode: str) -> None:
        self.data = os.urandom(BODY_SIZE)
        self.file = root / "body.bin"
        self.file.write_bytes(self.data)
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.server = LocalServer(Settings(fs_path=str(root / "storage")), port=0)
        self.server.start()
        self.mode = mode
        self.attempt = 0
        self.location = ""
        self.redirector = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.redirector.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.redirector.server_address[1]}/v1/probe/blobs/sha256:{self.sha256}"

    def fresh(self) -> str:
        """A new target key and the URL a client starts from; :meth:`stored` tells whether the bytes landed."""
        self.attempt += 1
        request = self.server.storage.presign_put(self.key, 600, sha256=self.sha256)
        assert request is not None
        self.location = request.url
        return self.url

    @property
    def key(self) -> str:
        return f"probe/{self.attempt}"

    def stored(self) -> bool:
        info = self.server.storage.stat(self.key)
        return info is not None and info.size == BODY_SIZE

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        probe = self

        class Redirect(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def handle_expect_100(self) -> bool:
                if probe.mode == "early":
                    self._redirect()
                    return False
                return super().handle_expect_100()

            def _redirect(self) -> None:
                self.send_response(307)
                self.send_header("Location", probe.location)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            def do_PUT(self) -> None:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        self.rfile.read(size + 2)
                    self.rfile.readline()
                else:
                    left = int(self.headers.get("Content-Length", "0"))
                    while left > 0:
                        left -= len(self.rfile.read(min(left, 1 << 20)))
                self._redirect()

        return Redirect

    def close(self) -> None:
        self.redirector.shutdown()
        self.redirector.server_close()
        self.server.shutdown()


@contextmanager
def probe(mode: str) -> Iterator[Probe]:
    with tempfile.TemporaryDirectory() as root:
        running = Probe(Path(root), mode)
        try:
            yield running
        finally:
            running.close()


def curl(*args: str) -> Callable[[Probe], str]:
    def attempt(p: Probe) -> str:
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args, p.fresh()],
            capture_output=True,
            text=True,
            cwd=p.file.parent,
            input=None,
            timeout=60,
        )
        return f"exit {done.returncode}, last status {done.stdout or '-'}"

    return attempt


def curl_pipe(p: Probe) -> str:
    """The body from a pipe, which cannot be rewound (``producer | curl -T -``)."""
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-L", "-T", "-", p.fresh()],
        input=p.data,
        capture_output=True,
        timeout=60,
    )
    return f"exit {done.returncode}, last status {done.stdout.decode() or '-'}"


def urllib_put(p: Probe) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(p.fresh(), data=p.data, method="PUT"), timeout=60) as r:
            return f"status {r.status}"
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTPError {exc.code}"


def http_client_put(p: Probe) -> str:
    import http.client
    from urllib.parse import urlsplit

    target = urlsplit(p.fresh())
    connection = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=60)
    try:
        connection.request("PUT", target.path, body=p.data)
        return f"status {connection.getresponse().status}"
    finally:
        connection.close()


_PYTHON_CLIENT = """
import sys
url, path, how = sys.argv[1:4]
data = open(path, "rb").read()
def chunks():
    for i in range(0, len(data), 1 << 20):
        yield data[i : i + (1 << 20)]
try:
    if how.startswith("requests"):
        import requests
        body = {"bytes": data, "file": open(path, "rb"), "generator": chunks()}[how.split()[1]]
        headers = {"Expect": "100-continue"} if how.endswith("expect") else {}
        print("status", requests.put(url, data=body, headers=headers, timeout=60).status_code)
    else:
        import httpx
        body = {"bytes": data, "generator": chunks()}[how.split()[1]]
        print("status", httpx.put(url, content=body, follow_redirects="follow" in how, timeout=60).status_code)
except Exception as exc:
    print(type(exc).__name__, str(exc)[:60])
"""


def python_client(how: str) -> Callable[[Probe], str]:
    """requests or httpx, from the interpreter ``PROBE_PYTHON`` names (they are not the project's dependencies)."""

    def attempt(p: Probe) -> str:
        command = [os.environ["PROBE_PYTHON"], "-c", _PYTHON_CLIENT, p.fresh(), str(p.file), how]
        return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout.strip()

    return attempt


def go_client(kind: str, expect: bool) -> Callable[[Probe], str]:
    """Go's net/http (``PROBE_GO``: a build of tests/redirect_probe.go: GO111MODULE=off go build)."""

    def attempt(p: Probe) -> str:
        command = [os.environ["PROBE_GO"], p.fresh(), str(p.file), kind, "expect" if expect else "plain"]
        return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout.strip()

    return attempt


OPTIONAL: dict[str, tuple[str, Callable[[Probe], str]]] = {
    "requests, bytes": ("PROBE_PYTHON", python_client("requests bytes")),
    "requests, open file": ("PROBE_PYTHON", python_client("requests file")),
    "requests, generator (chunked)": ("PROBE_PYTHON", python_client("requests generator")),
    "requests, bytes, Expect: 100-continue": ("PROBE_PYTHON", python_client("requests bytes expect")),
    "httpx, bytes (default: no redirects)": ("PROBE_PYTHON", python_client("httpx bytes")),
    "httpx, bytes, follow_redirects": ("PROBE_PYTHON", python_client("httpx bytes follow")),
    "httpx, generator, follow_redirects": ("PROBE_PYTHON", python_client("httpx generator follow")),
    "Go net/http, bytes.Reader": ("PROBE_GO", go_client("bytes", expect=False)),
    "Go net/http, *os.File": ("PROBE_GO", go_client("file", expect=False)),
    "Go net/http, bytes.Reader, Expect": ("PROBE_GO", go_client("bytes", expect=True)),
    "Go net/http, *os.File, Expect": ("PROBE_GO", go_client("file", expect=True)),
}

CLIENTS: dict[str, Callable[[Probe], str]] = {
    "curl -T file (sends Expect: 100-continue)": curl("-T", "body.bin"),
    "curl -L -T file": curl("-L", "-T", "body.bin"),
    "curl -L -T file -H 'Expect:'": curl("-L", "-T", "body.bin", "-H", "Expect:"),
    "curl -L -X PUT --data-binary @file": curl("-L", "-X", "PUT", "--data-binary", "@body.bin"),
    "curl -L -T - (a pipe)": curl_pipe,
    "python urllib.request": urllib_put,
    "python http.client": http_client_put,
}


def run(clients: dict[str, Callable[[Probe], str]]) -> list[tuple[str, str, str, bool]]:
    rows = []
    for mode in ("early", "after-body"):
        with probe(mode) as p:
            for name, client in clients.items():
                try:
                    outcome = client(p)
                except Exception as exc:  # a client's failure is a result here
                    outcome = f"{type(exc).__name__}: {str(exc)[:80]}"
                rows.append((mode, name, outcome, p.stored()))
    return rows


def main() -> None:
    import logging

    logging.getLogger("vmregistry").setLevel(logging.WARNING)
    clients = dict(CLIENTS) if shutil.which("curl") else {}
    clients |= {name: client for name, (needs, client) in OPTIONAL.items() if os.environ.get(needs)}
    for mode, name, outcome, stored in run(clients):
        print(f"{mode:<10} | {name:<45} | {outcome:<40} | {'stored' if stored else 'NOT stored'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
