"""Manifests: validated on the way in, stored by digest and by tag, listed by page.

A manifest is stored byte for byte (its digest is the hash of exactly the
bytes the client sent) under its digest. A tag is a :func:`tag_record`: the
manifest's digest on the first line, then a copy of its bytes, so a pull by
tag is one read and still knows which digest (and algorithm) the tag was
pushed with. The digest entry is written before the tag, so a tag never
points at a manifest that is not also addressable by digest.

What a PUT accepts (:func:`~vmregistry.oci.manifests.parse_manifest`, which
bounds the JSON and the descriptor count) depends on the client's
:data:`Form`: ``/v1`` takes the seed's VM image manifest, ``/v2`` every OCI and
Docker manifest and index. Everything a document references must already be
in the repository (:mod:`vmregistry.registry.references`). A document with a
``subject`` is listed among its subject's referrers (:mod:`vmregistry.registry.referrers`).

A VM image has two spellings (:mod:`vmregistry.oci.vmimage`, docs/oci.md): the
seed's manifest, which ``/v1`` clients read, and its OCI form, which OCI tools
copy. A PUT of either stores both, each under its own digest, so either digest
resolves through either API; a tag holds the form that was pushed, and a pull
by tag through the other API answers the other form. Deleting either digest
deletes both.

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
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

from vmregistry import mediatypes, paths
from vmregistry.config import MAX_MANIFEST_SIZE
from vmregistry.digests import CANONICAL, digest_of, split
from vmregistry.errors import RegistryError
from vmregistry.names import is_digest, parse_tag
from vmregistry.oci.descriptors import invalid
from vmregistry.oci.jsondoc import DocumentError, parse_document
from vmregistry.oci.manifests import ManifestKind, ParsedManifest, media_type_of, parse_manifest
from vmregistry.oci.mediatypes import OCI_MANIFEST, base_type
from vmregistry.oci.vmimage import to_oci, to_seed
from vmregistry.registry import zeros
from vmregistry.registry.blobs import Blobs
from vmregistry.registry.listing import MAX_PAGE_SIZE, Page, page_of
from vmregistry.registry.references import check_references, concurrently
from vmregistry.registry.referrers import Referrers
from vmregistry.storage import ObjectNotFound, Storage

__all__ = [
    "MAX_TAGS_PER_PUSH",
    "Form",
    "Manifest",
    "Manifests",
    "accepts",
    "parse_tag_record",
    "subject_of",
    "tag_record",
    "twin_of",
]

Form = Literal["seed", "oci"]
"""How a client spells a VM image: the seed's ``/v1`` manifest, or its OCI form (``/v2``)."""

MAX_TAGS_PER_PUSH = 64
"""Tags one PUT may write (its reference and ``?tag=`` parameters): each is a storage write."""

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
    subject: str | None = None
    """The digest the document's ``subject`` names (``/v2`` answers it as ``OCI-Subject``)."""
    tags: tuple[str, ...] = ()
    """The tags a PUT wrote (``/v2`` answers them as ``OCI-Tag``)."""


def _document(data: bytes) -> Any:
    try:
        return parse_document(data)
    except DocumentError:
        return None  # stored before the rules of today, or not by us: no type, no subject, no twin


def subject_of(data: bytes) -> str | None:
    """The digest a stored manifest's ``subject`` names, if it names one."""
    document = _document(data)
    subject = document.get("subject") if isinstance(document, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) and split(digest) is not None else None


def twin_of(data: bytes) -> bytes | None:
    """A VM image's other spelling (seed form <-> OCI form); ``None`` for anything else."""
    return to_oci(data) or to_seed(data)


def _respelled(data: bytes, media_type: str, form: Form) -> bytes | None:
    """What a client of ``form`` reads instead of a tag's ``data``: the VM image in its spelling, if it differs."""
    if form == "oci" and media_type == mediatypes.MANIFEST:
        return to_oci(data)
    if form == "seed" and media_type == OCI_MANIFEST:
        return to_seed(data)
    return None


def _parse(data: bytes, content_type: str | None, form: Form) -> ParsedManifest:
    if form == "seed":
        # The seed's /v1 rules: a VM image manifest, sent as itself or as JSON.
        if content_type and base_type(content_type) not in (mediatypes.MANIFEST, "application/json"):
            raise invalid("Content-Type must match the manifest's mediaType", contentType=content_type[:200])
        parsed = parse_manifest(data)
        if parsed.kind is not ManifestKind.VM_MANIFEST:
            raise invalid(
                f"mediaType must be {mediatypes.MANIFEST}: /v1 stores VM images; push other content through /v2",
                mediaType=parsed.media_type,
            )
        return parsed
    parsed = parse_manifest(data, content_type)
    if parsed.kind is ManifestKind.VM_MANIFEST:
        raise invalid(
            "/v2 takes a VM image in its OCI form (an OCI image manifest with artifactType"
            f" {mediatypes.MANIFEST}, docs/oci.md); the seed's form is /v1's",
            mediaType=parsed.media_type,
        )
    return parsed


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


def _page_size(n: int | None) -> int:
    """Keys a page reads: ``n`` and one more, to know whether a next page exists."""
    return (MAX_PAGE_SIZE if n is None else n) + 1


def _everything(_: str) -> bool:
    return True


class Manifests:
    def __init__(self, storage: Storage, blobs: Blobs) -> None:
        self.storage = storage
        self.blobs = blobs
        self.referrers = Referrers(storage)

    @staticmethod
    def _key(repository: str, reference: str) -> str:
        if is_digest(reference):
            return paths.manifest_key(repository, reference)
        return paths.tag_key(repository, reference)

    def get(self, repository: str, reference: str, form: Form = "seed") -> Manifest:
        """The manifest a reference names, as a client of ``form`` reads it (see the module docstring)."""
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
        media_type = media_type_of(_document(data))
        other = None if is_digest(reference) else _respelled(data, media_type, form)
        if other is not None:
            return Manifest(other, digest_of(other), media_type_of(_document(other)))
        return Manifest(data, digest, media_type)

    def put(
        self,
        repository: str,
        reference: str,
        data: bytes,
        content_type: str | None,
        *,
        form: Form = "seed",
        tags: Sequence[str] = (),
    ) -> Manifest:
        """Validate ``data`` and store it under its digest, ``reference`` if it is a tag, and ``tags``."""
        if len(data) > MAX_MANIFEST_SIZE:
            raise RegistryError("TOO_LARGE", f"manifests are limited to {MAX_MANIFEST_SIZE} bytes", {"size": len(data)})
        parsed = _parse(data, content_type, form)
        pushed_by = split(reference)
        digest = digest_of(data, pushed_by.algorithm if pushed_by else CANONICAL)
        if pushed_by is not None and reference != digest:
            raise RegistryError(
                "DIGEST_INVALID",
                "the manifest does not hash to the digest in the URL",
                {"expected": reference, "actual": digest},
            )
        wanted = list(dict.fromkeys([*([] if pushed_by else [reference]), *(parse_tag(tag) for tag in tags)]))
        if len(wanted) > MAX_TAGS_PER_PUSH:
            raise RegistryError(
                "TAG_INVALID", f"at most {MAX_TAGS_PER_PUSH} tags per push", {"limit": MAX_TAGS_PER_PUSH}
            )
        check_references(self.storage, self.blobs, repository, parsed)
        zeros.check_annotations(self.storage, parsed.layers)  # the disks' extent annotations claim only known zeros
        known = self._store(repository, digest, data)
        twin = twin_of(data)
        if twin is not None:
            self._store(repository, digest_of(twin), twin)
        if parsed.subject is not None:
            subject = parsed.subject.digest
            if not known or self.storage.stat(paths.referrer_key(repository, subject, digest)) is None:
                self.referrers.record(repository, parsed, digest, len(data))
        concurrently(lambda tag: self._tag(repository, tag, digest, data, known), wanted)
        if parsed.subject is not None and self.storage.stat(paths.manifest_key(repository, digest)) is None:
            # A delete of this digest ran between our writes and removed its referrer entry too: put it back.
            self._store(repository, digest, data)
            self.referrers.record(repository, parsed, digest, len(data))
        if not known:
            self._list_in_catalog(repository)
        subject_digest = parsed.subject.digest if parsed.subject is not None else None
        return Manifest(data, digest, parsed.media_type, subject_digest, tuple(wanted))

    def _store(self, repository: str, digest: str, data: bytes) -> bool:
        """Write the digest entry unless it is there (content-addressed: then it holds these bytes); was it?"""
        key = paths.manifest_key(repository, digest)
        if self.storage.stat(key) is not None:
            return True
        self.storage.write(key, data)
        return False

    def _tag(self, repository: str, tag: str, digest: str, data: bytes, known: bool) -> None:
        tag_key = paths.tag_key(repository, tag)
        # Re-pushing a tag unchanged (CI re-tagging `latest`) is a no-op: a read is much
        # cheaper than a durable write. Only a known manifest can already be under the tag.
        record = tag_record(digest, data)
        if known and self._holds(tag_key, record):
            return
        self.storage.write(tag_key, record)
        # A delete of this digest may have removed the digest entry after we looked
        # and scanned the tags before ours landed; the tag must not be left without it.
        # (delete() removes the entry before the tags, so one of us sees the other.)
        by_digest = paths.manifest_key(repository, digest)
        if self.storage.stat(by_digest) is None:
            self.storage.write(by_digest, data)

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
        """A tag: remove the tag. A digest: remove the manifest, its VM twin, the tags of either, its referrer entry."""
        if not is_digest(reference):
            if not self.storage.delete(paths.tag_key(repository, reference)):
                raise RegistryError("MANIFEST_UNKNOWN", detail={"repository": repository, "reference": reference})
            self._unlist_if_empty(repository)
            return
        try:
            data: bytes | None = self.storage.read(paths.manifest_key(repository, reference))
        except ObjectNotFound:
            data = None  # an interrupted delete, or only tags left: finish it
        twin = twin_of(data) if data is not None else None
        doomed = [reference, *([digest_of(twin)] if twin is not None else [])]
        # The digest entries go first, then the tags (see put() for the race this order closes).
        # A tag left by an interrupted delete still counts, so running the delete again finishes it.
        removed = False
        for digest in doomed:
            removed = self.storage.delete(paths.manifest_key(repository, digest)) or removed
        lines = {digest.encode() for digest in doomed}
        for tag in self.tags(repository):
            key = paths.tag_key(repository, tag)
            try:
                head = self.storage.read(key, 0, _DIGEST_LINE)
            except ObjectNotFound:
                continue
            if head.partition(b"\n")[0] in lines:
                removed = self.storage.delete(key) or removed
        subject = subject_of(data) if data is not None else None
        if subject is not None:
            self.referrers.forget(repository, subject, reference)
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
        keys = self.storage.list(prefix, start_after=prefix + last if last else None, page_size=_page_size(n))
        page = page_of((key.removeprefix(prefix) for key in keys), n)
        if not page.items and not last and not self._holds_any(repository):
            raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
        return page

    def repositories_page(
        self,
        n: int | None,
        last: str | None,
        visible: Callable[[str], bool] | None = None,
        prefixes: list[str] | None = None,
    ) -> Page:
        """One page of the catalog after ``last``, of the repositories ``visible`` admits.

        ``prefixes``: every visible name starts with one of them (the caller's grants,
        ``team/**`` -> ``team/``), so the walk covers only those ranges of the catalog
        instead of filtering all of it; ``None`` walks everything.
        """
        start = paths.catalog_key(last) if last else None
        ranges = [paths.CATALOG_PREFIX + prefix for prefix in (prefixes if prefixes is not None else [""])]
        # Each range is read a page at a time; unless everything in it is visible, a page may need more.
        size = _page_size(n) if prefixes is not None or visible is None else None
        keys = heapq.merge(*(self.storage.list(prefix, start_after=start, page_size=size) for prefix in ranges))
        names = (paths.repository_of_catalog_key(key) for key, _ in itertools.groupby(keys))
        return page_of((name for name in names if name is not None), n, visible or _everything)

    def repositories(self) -> list[str]:
        """Every repository that holds a manifest, sorted (upkeep; the API reads pages)."""
        found = (paths.repository_of_catalog_key(key) for key in self.storage.list(paths.CATALOG_PREFIX))
        return [name for name in found if name is not None]
