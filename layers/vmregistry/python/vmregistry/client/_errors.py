"""What can go wrong when talking to a registry, and what the user should do about it.

Every failure the client reports is a :class:`ClientError` whose message is
meant for a person: the registry's error code and message, followed by a hint
that says what to do next (:data:`HINTS` has one for every code in
:data:`vmregistry.errors.ERROR_CODES`, and a test keeps it that way). A 401
names the scope the server asked for in its ``WWW-Authenticate`` challenge,
because "unauthorized" alone does not tell anyone which token to get.
"""

from __future__ import annotations

import json
from typing import Any

from vmregistry.client._challenge import parse_challenge
from vmregistry.errors import ERROR_CODES

__all__ = [
    "HINTS",
    "ClientError",
    "DigestMismatch",
    "RegistryAPIError",
    "TransientError",
    "Unreachable",
    "UsageError",
    "from_response",
    "is_resumable",
    "is_transient",
]

HINTS: dict[str, str] = {
    "NAME_INVALID": "repository names are lowercase components like 'team/ubuntu-24.04' joined by '/'",
    "NAME_UNKNOWN": "check the repository name with 'vmregistry catalog REGISTRY'",
    "TAG_INVALID": "tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}",
    "DIGEST_INVALID": "the bytes did not hash to the expected digest: re-run the command; if it repeats,"
    " the file changed while it was read or something on the way alters data",
    "BLOB_UNKNOWN": "the blob is not in this repository: push the image again, or check the reference",
    "BLOB_UPLOAD_UNKNOWN": "the upload session expired or was cancelled: re-run the push to start a new one",
    "BLOB_UPLOAD_INVALID": "the upload is incomplete or malformed: re-run the push (it resumes what it can)",
    "SIZE_INVALID": "the size declared differs from the bytes sent: did the file change during the push?",
    "RANGE_INVALID": "delete the .partial file next to the output and pull again",
    "TOO_LARGE": "the request body is over the registry's limit: use a multipart upload (the default"
    " for large blobs) or a smaller --part-size",
    "MANIFEST_INVALID": "the manifest was rejected: see the detail for the offending field",
    "MANIFEST_UNKNOWN": "no such tag or digest: list tags with 'vmregistry tags REGISTRY/REPO'",
    "MANIFEST_BLOB_UNKNOWN": "push every blob before the manifest: re-run the push",
    "NOT_ACCEPTABLE": "the manifest has a media type this client does not ask for: upgrade the client",
    "PAGINATION_NUMBER_INVALID": "use a page size between 1 and the registry's maximum",
    "BAD_REQUEST": "the registry did not understand the request: upgrade the client or report a bug",
    "UNAUTHORIZED": "log in with 'vmregistry login REGISTRY' (or docker login), or pass a token that grants"
    " this scope with --token, VMREGISTRY_TOKEN or the credentials file (~/.config/vmregistry/credentials.json);"
    " tokens come from your Auth Server, or from 'vmregistry token' for a local registry",
    "DENIED": "your token does not grant this scope: get one that does (or check the repository name)",
    "SIGNATURE_INVALID": "a presigned URL expired or was altered: re-run the command (URLs are requested afresh)",
    "NOT_FOUND": "the URL is not a vmregistry /v1 API: check the registry address and its base path"
    " (API Gateway URLs end with the stage, e.g. https://host/prod)",
    "UNSUPPORTED": "the registry or its storage backend does not support this operation",
    "CONFLICT": "something changed the resource at the same time: re-run the command",
    "TOO_MANY_REQUESTS": "the registry is throttling: wait a little, or lower --concurrency",
    "INTERNAL": "the registry failed: re-run the command; if it repeats, check the registry's logs",
    "UNAVAILABLE": "the registry's storage is unavailable: try again later",
    "STORAGE_FULL": "the registry's storage is full: ask its operator to free space, then run the command again",
}


class ClientError(Exception):
    """A failure to report to the user; ``str()`` is the whole explanation."""


class UsageError(ClientError):
    """The command line or the arguments of an API call are wrong (nothing was sent)."""


class TransientError(ClientError):
    """Worth retrying: the connection failed or broke (5xx and 429 are :class:`RegistryAPIError`)."""


class Unreachable(ClientError):
    """No connection could be made to a host this run never reached: retrying will not help soon."""


class DigestMismatch(ClientError):
    """Downloaded or read bytes do not hash to the digest they were supposed to have."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{what}: digest mismatch: expected {expected}, got {actual}. The data was discarded;"
            " the registry or something between it and you altered the bytes."
        )
        self.expected = expected
        self.actual = actual


class RegistryAPIError(ClientError):
    """The registry (or its storage) answered with an error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        *,
        scope: str | None = None,
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.message = message
        self.detail = detail
        self.scope = scope
        self.url = url
        super().__init__(self._explain())

    @property
    def transient(self) -> bool:
        """5xx and 429 may succeed when tried again; other 4xx never will."""
        return self.status == 429 or self.status >= 500

    def _explain(self) -> str:
        text = f"{self.code} ({self.status}): {self.message}"
        if self.detail:
            text += f" {json.dumps(self.detail, separators=(',', ':'))[:500]}"
        if self.code in ("UNAUTHORIZED", "DENIED") and self.scope:
            text += f"\n  the registry asked for scope {self.scope!r}"
        hint = HINTS.get(self.code)
        if hint:
            text += f"\n  what to do: {hint}"
        return text


def _scope(challenge: str | None) -> str | None:
    """The ``scope`` parameter of a ``WWW-Authenticate: Bearer ...`` challenge."""
    parsed = parse_challenge(challenge)
    return parsed.params.get("scope") if parsed is not None else None


def _is_html(content_type: str, text: str) -> bool:
    return "html" in content_type.lower() or text[:15].lower().startswith(("<!doctype html", "<html"))


def is_transient(exc: BaseException) -> bool:
    """Worth sending again: a connection failure, or an answer the registry marks as transient (5xx, 429)."""
    return isinstance(exc, TransientError) or (isinstance(exc, RegistryAPIError) and exc.transient)


def is_resumable(exc: BaseException) -> bool:
    """A transfer that stopped on ``exc`` resumes when run again: it was transient, or the user interrupted it."""
    return is_transient(exc) or isinstance(exc, KeyboardInterrupt)


def from_response(status: int, body: bytes, headers: dict[str, str], url: str) -> RegistryAPIError:
    """The error an error response stands for (headers keyed in lower case)."""
    code, message, detail = "", "", None
    try:
        document = json.loads(body)
        first = document["errors"][0]
        code, message, detail = str(first["code"]), str(first.get("message", "")), first.get("detail") or None
    except (ValueError, KeyError, IndexError, TypeError):
        # Not a registry error body: S3's XML, API Gateway's {"message": ...}, a proxy's HTML.
        # A HEAD answer has no body at all.
        code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND", 429: "TOO_MANY_REQUESTS"}.get(
            status, "INTERNAL" if status >= 500 else "BAD_REQUEST"
        )
        text = body[:300].decode("utf-8", "replace").strip()
        if _is_html(headers.get("content-type", ""), text):
            # A web server or a login portal on that port: its page explains nothing about the registry.
            text = (
                f"HTTP {status}: {url.split('?')[0]} answered with an HTML page, not the registry's JSON:"
                " is this the registry's address and port?"
            )
        message = text or f"HTTP {status}: {ERROR_CODES[code].message}"
    retry_after = headers.get("retry-after", "")
    return RegistryAPIError(
        status,
        code,
        message,
        detail,
        scope=_scope(headers.get("www-authenticate")),
        url=url.split("?")[0],
        retry_after=float(retry_after) if retry_after.isdigit() else None,
    )
