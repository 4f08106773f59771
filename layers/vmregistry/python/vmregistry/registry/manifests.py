"""Manifests: validated on the way in, stored by digest and by tag, listed by page.

A manifest is stored byte for byte (its digest is the hash of exactly the
bytes the client sent) under its digest. A tag is a :func:`tag_record`: the
manifest's digest on the first line, then a copy of its bytes, so a pull by
tag is one read and still knows which digest (and algorithm) the tag was
pushed with. The digest entry is written before the tag, so a tag never
points at a manifest that is not also addressable by digest.

A repository is in the catalog (``catalog/<name>!``, :mod:`vmregistry.paths`)
while it holds a manifest. A push writes the entry *after* its manifest; a
delete that empties the repository removes the entry and then looks again, and
restores it if a push landed meanwhile. Either the push's entry lands after
the delete removed it, or the delete's second look sees the push's manifest:
the catalog never misses a repository that holds a manifest. (It may briefly
list one that was just emptied; ``vmregistry reindex`` rebuilds it from the
manifests.)
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from vmregistry import mediatypes, paths
from vmregistry.config import MAX_MANIFEST_SIZE
from vmregistry.digests import digest_of
from vmregistry.errors import RegistryError
from vmregistry.names import is_digest
from vmregistry.registry import zeros
from vmregistry.registry.blobs import Blobs
from vmregistry.registry.listing import Page, page_of
from vmregistry.storage import ObjectNotFound, Storage

__all__ = ["Manifest", "Manifests", "accepts", "parse_tag_record", "tag_record"]

_DIGEST_LINE = 140
"""Enough bytes to hold a tag record's first line (``sha512:`` and 128 hex digits, and the newline)."""


def tag_record(digest: str, data: bytes) -> bytes:
    """What a tag holds: its manifest's digest, a newline, the manifest's bytes."""
    return digest.encode() + b"\n" + data


def parse_tag_record(raw: bytes) -> tuple[str, bytes] | None:
    """(digest, manifest bytes) of a tag record; ``None`` if it is not one."""
    line, newline, data = raw.partition(b"\n")
    digest = line.decode("ascii", "replace")
    return (digest, data) if newline and is_digest(digest) else None


class Manifest(NamedTuple):
    data: bytes
    digest: str
    media_type: str


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail or None)


def _descriptor(value: Any, where: str, media_types: frozenset[str]) -> tuple[str, int]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if media_type not in media_types:
        raise _invalid(f"{where}.mediaType must be one of {sorted(media_types)}", mediaType=media_type)
    digest = value.get("digest")
    if not isinstance(digest, str) or not is_digest(digest):
        raise _invalid(f"{where}.digest must be sha256:<64 lowercase hex>", digest=digest)
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer", size=size)
    return digest, size


def validate(data: bytes, content_type: str | None) -> list[tuple[str, int]]:
    """Check the document's shape; returns the (digest, size) of every blob it references."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    if document.get("schemaVersion") != 2 or isinstance(document.get("schemaVersion"), bool):
        raise _invalid("schemaVersion must be 2", schemaVersion=document.get("schemaVersion"))
    media_type = document.get("mediaType")
    if media_type != mediatypes.MANIFEST:
        raise _invalid(f"mediaType must be {mediatypes.MANIFEST}", mediaType=media_type)
    if content_type and content_type.split(";")[0].strip() not in (mediatypes.MANIFEST, "application/json"):
        raise _invalid("Content-Type must match the manifest's mediaType", contentType=content_type)
    references = [_descriptor(document.get("config"), "config", frozenset({mediatypes.CONFIG}))]
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise _invalid("layers must be a list of descriptors")
    references.extend(_descriptor(layer, f"layers[{i}]", mediatypes.LAYER_TYPES) for i, layer in enumerate(layers))
    return references


def accepts(accept: str | None, media_type: str) -> bool:
    """Does an Accept header admit ``media_type``? No header admits everything."""
    if not accept or not accept.strip():
        return True
    major = media_type.split("/")[0]
    for item in accept.split(","):
        candidate = item.split(";")[0].strip().lower()
        if candidate in (media_type, "*/*", f"{major}/*", "application/json"):
            return True
    return False


class Manifests:
    def __init__(self, storage: Storage, blobs: Blobs) -> None:
        self.storage = storage
        self.blobs = blobs

    @staticmethod
    def _key(repository: str, reference: str) -> str:
        if is_digest(reference):
            return paths.manifest_key(repository, reference)
        return paths.tag_key(repository, reference)

    def get(self, repository: str, reference: str) -> Manifest:
        unknown = RegistryError("MANIFEST_UNKNOWN", detail={"repository": repository, "reference": reference})
        try:
            raw = self.storage.read(self._key(repository, reference))
        except ObjectNotFound:
            raise unknown from None
        if is_digest(reference):
            digest, data = reference, raw
        else:
            record = parse_tag_record(raw)
            if record is None:
                raise unknown
            digest, data = record
        try:
            media_type = json.loads(data).get("mediaType", mediatypes.MANIFEST)
        except ValueError:
            media_type = mediatypes.MANIFEST
        return Manifest(data, digest, media_type)

    def put(self, repository: str, reference: str, data: bytes, content_type: str | None) -> Manifest:
        if len(data) > MAX_MANIFEST_SIZE:
            raise RegistryError("TOO_LARGE", f"manifests are limited to {MAX_MANIFEST_SIZE} bytes", {"size": len(data)})
        references = validate(data, content_type)
        digest = digest_of(data)
        if is_digest(reference) and reference != digest:
            raise RegistryError(
                "DIGEST_INVALID",
                "the manifest does not hash to the digest in the URL",
                {"expected": reference, "actual": digest},
            )
        unknown = []
        for blob_digest, size in references:
            blob = self.blobs.find(repository, blob_digest)
            if blob is None:
                unknown.append(blob_digest)
            elif blob.size != size:
                raise _invalid(
                    "a descriptor's size differs from the stored blob",
                    digest=blob_digest,
                    declared=size,
                    stored=blob.size,
                )
        if unknown:
            raise RegistryError(
                "MANIFEST_BLOB_UNKNOWN",
                "push every blob before the manifest that references it",
                {"digests": sorted(set(unknown))},
            )
        zeros.check_annotations(self.storage, data)  # the disks' extent annotations claim only known zeros
        by_digest = paths.manifest_key(repository, digest)
        # Content-addressed: if it is there, it is these very bytes (pushing a tag again is common).
        known = self.storage.stat(by_digest) is not None
        if not known:
            self.storage.write(by_digest, data)
        if reference != digest:
            tag_key = paths.tag_key(repository, reference)
            # Re-pushing a tag unchanged (CI re-tagging `latest`) is a no-op: a read is much
            # cheaper than a durable write. Only a known manifest can already be under the tag.
            record = tag_record(digest, data)
            if not (known and self._holds(tag_key, record)):
                self.storage.write(tag_key, record)
                # A delete of this digest may have removed the digest entry after we looked
                # and scanned the tags before ours landed; the tag must not be left without it.
                # (delete() removes the entry before the tags, so one of us sees the other.)
                if self.storage.stat(by_digest) is None:
                    self.storage.write(by_digest, data)
        if not known:
            self._list_in_catalog(repository)
        return Manifest(data, digest, mediatypes.MANIFEST)

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return self.storage.read(key) == data
        except ObjectNotFound:
            return False

    def _list_in_catalog(self, repository: str) -> None:
        """After a manifest landed: the repository is listed (one stat when it already is)."""
        key = paths.catalog_key(repository)
        if self.storage.stat(key) is None:
            self.storage.write(key, b"")

    def _holds_any(self, repository: str) -> bool:
        for prefix in (paths.manifests_prefix(repository), paths.tags_prefix(repository)):
            if next(self.storage.list(prefix), None) is not None:
                return True
        return False

    def _unlist_if_empty(self, repository: str) -> None:
        """After a delete: leave the catalog if no manifest is left, then look again (see the module doc)."""
        if self._holds_any(repository):
            return
        self.storage.delete(paths.catalog_key(repository))
        if self._holds_any(repository):
            self._list_in_catalog(repository)

    def delete(self, repository: str, reference: str) -> None:
        """A tag: remove the tag. A digest: remove the manifest and every tag that points at it."""
        if not is_digest(reference):
            if not self.storage.delete(paths.tag_key(repository, reference)):
                raise RegistryError("MANIFEST_UNKNOWN", detail={"repository": repository, "reference": reference})
            self._unlist_if_empty(repository)
            return
        # The digest entry goes first, then the tags (see put() for the race this order closes).
        # A tag left by an interrupted delete still counts, so running the delete again finishes it.
        removed = self.storage.delete(paths.manifest_key(repository, reference))
        for tag in self.tags(repository):
            key = paths.tag_key(repository, tag)
            try:
                head = self.storage.read(key, 0, _DIGEST_LINE)
            except ObjectNotFound:
                continue
            if head.partition(b"\n")[0] == reference.encode():
                removed = self.storage.delete(key) or removed
        if not removed:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"repository": repository, "reference": reference})
        self._unlist_if_empty(repository)

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository``, sorted."""
        prefix = paths.tags_prefix(repository)
        return [key.removeprefix(prefix) for key in self.storage.list(prefix)]

    def tags_page(self, repository: str, n: int | None, last: str | None) -> Page:
        """One page of tags after ``last``; NAME_UNKNOWN when the repository holds no manifest at all."""
        prefix = paths.tags_prefix(repository)
        keys = self.storage.list(prefix, start_after=prefix + last if last else None)
        page = page_of((key.removeprefix(prefix) for key in keys), n)
        if not page.items and not last and not self._holds_any(repository):
            raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
        return page

    def repositories_page(
        self,
        n: int | None,
        last: str | None,
        visible: Callable[[str], bool] = lambda _: True,
        prefixes: list[str] | None = None,
    ) -> Page:
        """One page of the catalog after ``last``, of the repositories ``visible`` admits.

        ``prefixes``: every visible name starts with one of them (the caller's grants,
        ``team/**`` -> ``team/``), so the walk covers only those ranges of the catalog
        instead of filtering all of it; ``None`` walks everything.
        """
        start = paths.catalog_key(last) if last else None
        ranges = [paths.CATALOG_PREFIX + prefix for prefix in (prefixes if prefixes is not None else [""])]
        keys = heapq.merge(*(self.storage.list(prefix, start_after=start) for prefix in ranges))
        names = (paths.repository_of_catalog_key(key) for key, _ in itertools.groupby(keys))
        return page_of((name for name in names if name is not None), n, visible)

    def repositories(self) -> list[str]:
        """Every repository that holds a manifest, sorted (upkeep; the API reads pages)."""
        found = (paths.repository_of_catalog_key(key) for key in self.storage.list(paths.CATALOG_PREFIX))
        return [name for name in found if name is not None]
