"""One HTTP(S) request, nothing followed or added: what tests and the bench send, to the emulator and to local servers.

Tests must see exactly what a server answered (a 307 is a 307), so this wraps
:mod:`http.client` instead of a convenience library. Names under ``.localhost``
are loopback (RFC 6761; curl and browsers resolve them so, this machine's
resolver does not), so the API's AWS-shaped host
``<api-id>.execute-api.localhost`` is reached at 127.0.0.1 with that name in
``Host``; the certificate is checked against 127.0.0.1, which it names.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["Answer", "fetch"]


class Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(
    context: ssl.SSLContext | None,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Answer:
    """``method`` on ``url``; ``context`` verifies an https server (``None``: the system's CAs)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    address = "127.0.0.1" if host.endswith(".localhost") else host
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(address, parts.port or 443, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(address, parts.port or 80, timeout=timeout)
    sent = dict(headers or {})
    if address != host:
        sent.setdefault("Host", parts.netloc)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()
