"""HTTP at the byte level, for what ordinary clients will not send or will hide.

``http.client`` swallows ``100 Continue`` and cannot send two ``Content-Length``
headers or a body shorter than the one it declared; tests of those cases
write the request themselves and read the answer line by line. Also here:
large bodies generated on the fly (never held in memory) and sent or hashed
as a stream, and a pull that hashes what it receives.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

__all__ = ["Exchange", "blocks", "digest_of_blocks", "pulled_digest", "put_stream"]

_BLOCK = os.urandom(1024 * 1024)


def blocks(size: int, seed: int) -> Iterator[bytes]:
    """``size`` bytes in 1 MiB pieces, made on the fly: each piece differs (its index and ``seed`` lead)."""
    index = 0
    while size > 0:
        piece = (seed.to_bytes(8, "big") + index.to_bytes(8, "big") + _BLOCK[16:])[: min(size, len(_BLOCK))]
        yield piece
        size -= len(piece)
        index += 1


def digest_of_blocks(size: int, seed: int) -> str:
    digest = hashlib.sha256()
    for piece in blocks(size, seed):
        digest.update(piece)
    return f"sha256:{digest.hexdigest()}"


def put_stream(
    url: str, method: str, path: str, size: int, seed: int, *, chunked: bool = False
) -> tuple[int, bytes, dict[str, str]]:
    """Send ``blocks(size, seed)`` as a body (with ``Content-Length``, or chunked); status, body, headers."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=300)
    try:
        headers = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(size)}
        connection.request(method, path, body=blocks(size, seed), headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def pulled_digest(url: str, repository: str, digest: str) -> str:
    """GET the blob, follow its redirect, and hash what arrives (without holding it)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=300)
    try:
        connection.request("GET", f"/v1/{repository}/blobs/{digest}")
        redirect = connection.getresponse()
        redirect.read()
        assert redirect.status == 307, redirect.status
        location = redirect.getheader("Location") or ""
    finally:
        connection.close()
    target = urlsplit(location)
    data_connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=300)
    try:
        data_connection.request("GET", target.path + (f"?{target.query}" if target.query else ""))
        response = data_connection.getresponse()
        assert response.status == 200, response.status
        hashed = hashlib.sha256()
        while piece := response.read(1024 * 1024):
            hashed.update(piece)
        return f"sha256:{hashed.hexdigest()}"
    finally:
        data_connection.close()


class Exchange:
    """One connection on which a test writes a request's bytes and reads answers a line at a time."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout)
        self.rfile = self.sock.makefile("rb")

    def send_head(self, method: str, path: str, headers: list[tuple[str, str]]) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers), "", ""]
        self.sock.sendall("\r\n".join(lines).encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def finish_sending(self) -> None:
        """Half-close: the server reads the end of the stream where it expected more body."""
        self.sock.shutdown(socket.SHUT_WR)

    def read_reply(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer (a ``100 Continue`` counts as one): status, headers (lowercase), body."""
        status_line = self.rfile.readline()
        assert status_line, "the server closed the connection without answering"
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.rfile.read(int(headers.get("content-length", "0")))
        return status, headers, body

    def closed_by_server(self) -> bool:
        """Does the server end the connection (no further answer)?"""
        return self.rfile.read(1) == b""

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
