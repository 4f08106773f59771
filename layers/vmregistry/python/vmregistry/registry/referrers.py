"""The referrers of a manifest: recorded when a manifest with a ``subject`` is pushed, read a page at a time.

A manifest PUT whose document names a ``subject`` writes the descriptor the
referrers API lists for it (:func:`~vmregistry.oci.referrers.referrer_descriptor`)
under ``repositories/<name>/_referrers/<subject>/<digest>`` (:mod:`vmregistry.paths`);
deleting the manifest removes it. ``GET /v2/<name>/referrers/<digest>`` then
reads one sorted key range of small objects, whatever the repository holds.

A page is bounded twice, because what one costs is the client's choice (issue
19): at most :data:`MAX_PAGE` descriptors, read :data:`~vmregistry.registry.references.LOOKUPS`
at a time, and at most :data:`MAX_PAGE_BYTES` of them (a descriptor carries its
manifest's annotations, up to the 4 MiB manifest limit, and a Lambda answer is
at most 6 MB). A longer list continues on the next page (``Link: ...; rel="next"``,
``?last=<the page's last digest>``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from vmregistry import paths
from vmregistry.digests import split
from vmregistry.oci.jsondoc import DocumentError, parse_document
from vmregistry.oci.manifests import ParsedManifest
from vmregistry.oci.referrers import referrer_descriptor
from vmregistry.registry.references import LOOKUPS, concurrently
from vmregistry.storage import ObjectNotFound, Storage

__all__ = ["MAX_PAGE", "MAX_PAGE_BYTES", "Referrers", "ReferrersPage"]

MAX_PAGE = 256
MAX_PAGE_BYTES = 4 * 1024 * 1024
_BATCH = 2 * LOOKUPS


@dataclass(frozen=True, slots=True)
class ReferrersPage:
    descriptors: list[dict[str, Any]]
    next_last: str | None
    """The ``last`` of the next page, ``None`` on the final one."""


class Referrers:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def record(self, repository: str, parsed: ParsedManifest, digest: str, size: int) -> None:
        """List the manifest ``digest`` under its subject (``parsed`` must have one)."""
        assert parsed.subject is not None
        entry = referrer_descriptor(parsed, digest, size)
        key = paths.referrer_key(repository, parsed.subject.digest, digest)
        self.storage.write(key, json.dumps(entry, separators=(",", ":"), sort_keys=True).encode())

    def forget(self, repository: str, subject: str, digest: str) -> None:
        self.storage.delete(paths.referrer_key(repository, subject, digest))

    def page(self, repository: str, subject: str, artifact_type: str | None, last: str | None) -> ReferrersPage:
        """The referrers of ``subject`` after ``last`` (a referrer digest), ``artifact_type`` only if given."""
        prefix = paths.referrers_prefix(repository, subject)
        keys = self.storage.list(prefix, start_after=paths.referrer_key(repository, subject, last) if last else None)
        descriptors: list[dict[str, Any]] = []
        size = 0
        while batch := list(itertools.islice(keys, _BATCH)):
            for entry in concurrently(self._read, batch):
                if entry is None or (artifact_type and entry.get("artifactType") != artifact_type):
                    continue
                size += len(json.dumps(entry))
                if len(descriptors) == MAX_PAGE or (descriptors and size > MAX_PAGE_BYTES):
                    # One more passes after a full page: there is a next page, starting after this one.
                    return ReferrersPage(descriptors, str(descriptors[-1]["digest"]))
                descriptors.append(entry)
        return ReferrersPage(descriptors, None)

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            entry = parse_document(self.storage.read(key))
        except (ObjectNotFound, DocumentError):
            return None  # deleted meanwhile, or not written by us
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str) or split(entry["digest"]) is None:
            return None
        return entry
