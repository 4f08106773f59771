"""The registry's small API calls: manifests, tags, the catalog, blob existence.

Everything here fits in memory; blob bytes move in :mod:`._push` and
:mod:`._pull`. Every call retries transient failures. Manifests are verified
on the way in: a manifest fetched by digest must hash to that digest, and one
fetched by tag must hash to the ``Docker-Content-Digest`` the registry sent,
so a tampered manifest cannot smuggle in other blob digests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from vmregistry import mediatypes
from vmregistry.client._auth import resolve_credentials
from vmregistry.client._errors import DigestMismatch, RegistryAPIError, UsageError
from vmregistry.client._reference import Reference, RegistryHost, parse_reference, parse_registry
from vmregistry.client._tokens import TokenSource
from vmregistry.client._transport import Reply, Transport
from vmregistry.digests import digest_of, is_digest

__all__ = ["FetchedManifest", "RegistryClient"]

_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    data: bytes
    digest: str
    media_type: str

    def document(self) -> dict[str, Any]:
        import json

        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise UsageError("the manifest is not a JSON object")
        return value


class RegistryClient:
    """One registry, one source of tokens. Thread-safe: every thread gets its own connections.

    ``token`` is a bearer token (sent as it is), a :class:`TokenSource`, or
    ``None`` to look credentials up (:func:`._auth.resolve_credentials`).
    ``on_retry`` hears about every retried API call (the CLI prints them).
    """

    def __init__(
        self,
        registry: RegistryHost,
        token: str | TokenSource | None = None,
        *,
        retries: int = 5,
        timeout: float = 120.0,
        ca_bundle: str | None = None,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> None:
        self.registry = registry
        self.retries = retries
        self.on_retry = on_retry
        tokens = token if isinstance(token, TokenSource) else resolve_credentials(registry, token)
        self.transport = Transport(registry, tokens, timeout=timeout, ca_bundle=ca_bundle)

    def want(self, *scopes: str) -> None:
        """Declare the scopes the coming requests need, so one token fetched for a login covers them all."""
        self.transport.tokens.want(scopes)

    @classmethod
    def connect(
        cls,
        registry: str,
        *,
        token: str | TokenSource | None = None,
        insecure: bool = False,
        retries: int = 5,
        ca_bundle: str | None = None,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> RegistryClient:
        return cls(
            parse_registry(registry, insecure=insecure), token, retries=retries, ca_bundle=ca_bundle, on_retry=on_retry
        )

    @classmethod
    def for_reference(
        cls,
        text: str,
        *,
        token: str | TokenSource | None = None,
        insecure: bool = False,
        retries: int = 5,
        ca_bundle: str | None = None,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> tuple[RegistryClient, Reference]:
        """A client and the parsed reference, asking the registry where its base path ends if unclear."""
        readings = parse_reference(text, insecure=insecure)
        if len(readings) == 1:
            client = cls(readings[0].registry, token, retries=retries, ca_bundle=ca_bundle, on_retry=on_retry)
            return client, readings[0]
        for reading in readings:
            client = cls(reading.registry, token, retries=retries, ca_bundle=ca_bundle, on_retry=on_retry)
            if client.is_registry():
                return client, reading
            client.close()
        raise UsageError(
            f"no vmregistry /v1 API found under any prefix of {text!r}: check the URL (and the API's stage)"
        )

    # -- plumbing ---------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.registry.url(path)

    def resolve(self, location: str) -> str:
        """An absolute URL for a ``Location`` or ``Link`` (the registry sends paths from its origin)."""
        if "://" in location:
            return location
        return self.registry.origin + location

    def call(self, method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None) -> Reply:
        return self.transport.request(
            method, url, headers=headers, body=body, retries=self.retries, on_retry=self.on_retry
        )

    def is_registry(self) -> bool:
        """Does ``base_url`` serve the /v1 API? (200, or a 401 challenge, to ``GET /v1/``.)"""
        try:
            self.call("GET", self.url("/v1/"))
        except RegistryAPIError as exc:
            return exc.status == 401
        return True

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- manifests --------------------------------------------------------------

    def _manifest_url(self, repository: str, reference: str) -> str:
        return self.url(f"/v1/{repository}/manifests/{quote(reference, safe=':')}")

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        reply = self.call(
            "GET",
            self._manifest_url(repository, reference),
            headers={"Accept": f"{mediatypes.MANIFEST}, application/json;q=0.5"},
        )
        digest = digest_of(reply.body)
        expected = reference if is_digest(reference) else reply.headers.get("docker-content-digest")
        if expected and expected != digest:
            raise DigestMismatch(f"manifest {repository}:{reference}", expected, digest)
        return FetchedManifest(reply.body, digest, reply.headers.get("content-type", mediatypes.MANIFEST))

    def put_manifest(self, repository: str, reference: str, data: bytes) -> str:
        reply = self.call(
            "PUT",
            self._manifest_url(repository, reference),
            headers={"Content-Type": mediatypes.MANIFEST},
            body=data,
        )
        digest = digest_of(data)
        returned = reply.headers.get("docker-content-digest")
        if returned and returned != digest:
            raise DigestMismatch(f"manifest {repository}:{reference} as stored", digest, returned)
        return digest

    def delete_manifest(self, repository: str, reference: str) -> None:
        self.call("DELETE", self._manifest_url(repository, reference))

    # -- blobs ------------------------------------------------------------------

    def blob_url(self, repository: str, digest: str) -> str:
        return self.url(f"/v1/{repository}/blobs/{digest}")

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The blob's size if the repository holds it, ``None`` if not (HEAD)."""
        try:
            reply = self.call("HEAD", self.blob_url(repository, digest))
        except RegistryAPIError as exc:
            if exc.status == 404:
                return None
            raise
        length = reply.headers.get("content-length", "")
        return int(length) if length.isdigit() else None

    # -- listings ---------------------------------------------------------------

    def _pages(self, path: str, key: str, page_size: int | None) -> Iterator[str]:
        url: str | None = self.url(path + (f"?n={page_size}" if page_size else ""))
        while url is not None:
            reply = self.call("GET", url)
            yield from reply.json().get(key) or []
            found = _NEXT_LINK.search(reply.headers.get("link", ""))
            url = None
            if found:
                link = urlsplit(found.group(1))
                url = self.resolve(link.path + (f"?{link.query}" if link.query else ""))

    def tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        return list(self._pages(f"/v1/{repository}/tags/list", "tags", page_size))

    def catalog(self, *, page_size: int | None = None) -> list[str]:
        return list(self._pages("/v1/_catalog", "repositories", page_size))
