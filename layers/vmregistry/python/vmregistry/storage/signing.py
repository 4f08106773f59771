"""HMAC-signed URLs for the local data plane: our stand-in for S3 presigning.

A URL authorises one method, one operation and one set of parameters (the
object key, and for parts the upload id and part number, and for single PUTs
the SHA-256 the body must have) until it expires. Any change to any of them,
or to the expiry, breaks the signature. The secret never leaves the server
(its workers share it; or the operator's configuration), so only this server
can mint URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from contextvars import ContextVar
from urllib.parse import urlencode

__all__ = ["SignatureInvalid", "UrlSigner", "request_origin"]

request_origin: ContextVar[str | None] = ContextVar("request_origin", default=None)
"""The origin (``http://host:port``) the current client used, when no public URL is configured.

The local server sets it per request from the ``Host`` header, so a server bound to
``0.0.0.0`` hands each client URLs on the address that client already reaches. The
origin is not part of the signature: it only decides where the client sends the request.
"""

_EXPIRES = "X-Vmr-Expires"
_SIGNATURE = "X-Vmr-Signature"
# Operations the data plane performs and the HTTP method each one must use.
OPERATIONS = {"get": "GET", "put": "PUT", "part": "PUT"}


class SignatureInvalid(Exception):
    """The URL was not signed by us, was altered, or has expired."""


class UrlSigner:
    def __init__(self, base_url: str, secret: bytes | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, operation: str, params: Mapping[str, str], expires: int) -> str:
        canonical = "\n".join(
            [OPERATIONS[operation], operation, str(expires), *(f"{k}={params[k]}" for k in sorted(params))]
        )
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def sign(self, operation: str, params: Mapping[str, str], expires_in: int) -> tuple[str, int]:
        """The URL for ``operation`` with ``params``, and when it expires (epoch seconds)."""
        expires = int(time.time()) + expires_in
        query = dict(params)
        query[_EXPIRES] = str(expires)
        query[_SIGNATURE] = self._mac(operation, params, expires)
        base = request_origin.get() or self.base_url
        return f"{base}/_data/{operation}?{urlencode(query)}", expires

    def verify(self, method: str, operation: str, query: Mapping[str, str]) -> dict[str, str]:
        """The signed parameters of a request, or :class:`SignatureInvalid`."""
        if OPERATIONS.get(operation) != method:
            raise SignatureInvalid(f"{method} is not allowed on /_data/{operation}")
        params = {k: v for k, v in query.items() if k not in (_EXPIRES, _SIGNATURE)}
        try:
            expires = int(query[_EXPIRES])
            signature = query[_SIGNATURE]
        except (KeyError, ValueError):
            raise SignatureInvalid("the URL carries no valid signature") from None
        if not hmac.compare_digest(signature, self._mac(operation, params, expires)):
            raise SignatureInvalid("the signature does not match the request")
        if expires < time.time():
            raise SignatureInvalid("the URL has expired")
        return params
