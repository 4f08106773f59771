"""The storage contract: a small object store every backend implements.

The registry's domain layer (:mod:`vmregistry.registry`) is written against
this class only. Keys are ``/``-separated relative paths built by
:mod:`vmregistry.paths`, made of components of :data:`KEY_COMPONENT`.

The contract checks keys itself, once, for every backend: a subclass's
implementation of each keyed method is wrapped (:meth:`Storage.__init_subclass__`)
so that a key outside the grammar (``..``, an absolute path, an empty
component, a control character) raises :class:`InvalidKey` before the backend
runs, whichever backend it is and whichever method it calls; no backend can
forget it (distribution wraps every driver in one ``base`` for the same reason).

Semantics every backend must honour, and that ``tests/test_storage_conformance.py``
checks for each of them:

* Writes are atomic: a reader sees the old object, the new object or nothing,
  never a partial one. A write with ``sha256=`` that does not match stores
  nothing and raises :class:`ChecksumMismatch`.
* "Cannot redirect" is a return value: ``presign_*`` returns ``None`` when
  the backend has no URL to give, and the caller serves the bytes itself.
* A presigned URL authorises exactly one method on exactly one object (or
  multipart part) until it expires; a presigned PUT that binds ``sha256``
  refuses a body with another digest, so a wrong body never lands.
* Multipart uploads follow S3: parts numbered 1..10000, each at least
  :data:`MIN_PART_SIZE` except the last, at most :data:`MAX_PART_SIZE`;
  the object appears only when :meth:`Storage.multipart_complete` succeeds,
  and it is the parts joined in number order. An upload created with its
  ``size`` takes every part with its ``offset`` in the object, so a backend
  may write parts where they belong as they arrive (the filesystem does: its
  completion then copies nothing); parts whose offsets do not follow from
  the sizes before them, or that end past ``size``, are refused there.
* A zero part (:meth:`Storage.multipart_zero_part`) is filled by storage
  itself: no zero byte crosses the network.
* :meth:`Storage.receive` takes a body of any size as a stream, hashing it
  as it arrives and never holding it whole in memory (the filesystem writes
  a temporary file; S3 gets one PUT, or a multipart upload from the server).
* Backend trouble (unreachable, throttled after retries, access denied) is
  :class:`StorageUnavailable`, never a library exception; a full disk is
  :class:`StorageFull`, and the failed write leaves nothing behind.
* Missing objects are ``None`` from :meth:`stat`, :class:`ObjectNotFound`
  from reads, ``False`` from :meth:`delete`.
* :meth:`list` is lazy and sorted: keys come in lexicographic (byte) order,
  strictly after ``start_after``, and a caller that stops early pays only for
  what it read (S3: one ListObjectsV2 request per 1,000 keys consumed).
"""

from __future__ import annotations

import builtins  # the contract's list() method shadows the builtin inside the class
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from vmregistry.storage.keys import (
    KEY_COMPONENT,
    InvalidKey,
    StorageError,
    check_key,
    check_prefix,
    install_key_checks,
)

__all__ = [
    "KEY_COMPONENT",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MAX_SINGLE_PUT_SIZE",
    "MAX_ZERO_PART_SIZE",
    "MIN_PART_SIZE",
    "ChecksumMismatch",
    "InvalidKey",
    "MultipartUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "PresignedRequest",
    "ReadStream",
    "Readable",
    "Storage",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "UploadedPart",
    "check_key",
    "check_prefix",
]

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
MAX_SINGLE_PUT_SIZE = 5 * 1024 * 1024 * 1024
MAX_ZERO_PART_SIZE = 1024 * 1024 * 1024
"""The largest zero part: S3 copies it from an all-zero object of this size at most, within one API request."""


class ObjectNotFound(StorageError):
    """The key (or multipart upload) does not exist."""


class ChecksumMismatch(StorageError):
    """The bytes did not hash to the SHA-256 the caller required; nothing was stored."""


class StorageUnavailable(StorageError):
    """The backend could not be reached or refused us; the client may retry later."""


class StorageFull(StorageError):
    """No space left (a full disk or quota); the write stored nothing."""


class Readable(Protocol):
    """A stream a body is read from: a socket's body reader, a file."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class ObjectInfo(NamedTuple):
    key: str
    size: int
    modified: float
    """Seconds since the epoch."""
    etag: str | None = None
    sha256: str | None = None
    """Lowercase hex SHA-256 when the backend computed it while writing (saves a re-read)."""


class UploadedPart(NamedTuple):
    number: int
    size: int
    etag: str


class MultipartUpload(NamedTuple):
    """A multipart upload in progress (not yet completed or aborted)."""

    key: str
    upload_id: str
    modified: float
    """When it last changed (created, or a part stored), seconds since the epoch."""


class PresignedRequest(NamedTuple):
    """A request the client sends itself, straight to the data plane."""

    url: str
    method: str
    expires_at: int
    """Seconds since the epoch."""
    headers: Mapping[str, str] = MappingProxyType({})
    """Headers the client must send unchanged (they are part of the signature)."""


class ReadStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class Storage(ABC):
    """An object store addressed by relative ``/``-separated keys."""

    name: str = "abstract"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap every keyed method a backend defines so that it checks its keys first."""
        super().__init_subclass__(**kwargs)
        install_key_checks(cls)

    # -- reading -----------------------------------------------------------

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and modification time of an object, or ``None`` if absent."""

    @abstractmethod
    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of an object (whole, or ``length`` bytes from ``offset``).

        Meant for small objects (manifests, session state, inline blobs).
        Raises :class:`ObjectNotFound`.
        """

    @abstractmethod
    def open(self, key: str) -> ReadStream:
        """A sequential reader over a possibly huge object. Raises :class:`ObjectNotFound`."""

    @abstractmethod
    def list(self, prefix: str, *, start_after: str | None = None, page_size: int | None = None) -> Iterator[str]:
        """The keys that start with ``prefix`` (at any depth), in lexicographic order, lazily.

        With ``start_after``, only keys greater than it. The iterator reads the
        store as it is consumed: stopping after a page costs about that page.
        ``page_size`` is a hint: how many keys the caller expects to read, so a
        backend that lists in batches (S3: 1,000 keys a request) asks for no more
        in its first one.
        """

    listing_proves_content: bool = False
    """Whether :meth:`scan` reports, for an object stored by :meth:`write`, the hex MD5 of its bytes as its
    ``etag`` (S3's ETag of a single PUT without KMS): then one listing proves what 1,000 objects hold."""

    def scan(
        self, prefix: str, *, start_after: str | None = None, page_size: int | None = None
    ) -> Iterator[ObjectInfo]:
        """:meth:`list`, with each key's :class:`ObjectInfo` as the backend's listing knows it.

        The default stats each key; a backend whose listing carries sizes and etags (S3) needs no more.
        """
        for key in self.list(prefix, start_after=start_after, page_size=page_size):
            info = self.stat(key)
            if info is not None:
                yield info

    # -- writing -----------------------------------------------------------

    @abstractmethod
    def write(self, key: str, data: bytes, *, sha256: str | None = None) -> ObjectInfo:
        """Create or replace an object atomically.

        With ``sha256`` (lowercase hex) the write happens only if the data hashes
        to it; otherwise :class:`ChecksumMismatch` and nothing changes.
        """

    @abstractmethod
    def receive(self, key: str, source: Readable, length: int | None, *, sha256: str | None = None) -> ObjectInfo:
        """Create or replace an object from a stream: ``length`` bytes, or all of it when ``None``.

        Streamed and hashed while it arrives, never held whole in memory; the
        answer's ``sha256`` is always set. With ``sha256``, a body that hashes
        otherwise stores nothing (:class:`ChecksumMismatch`); a stream that ends
        before ``length`` bytes (:class:`EOFError`) or fails stores nothing either.
        """

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove an object; ``False`` if there was none."""

    @abstractmethod
    def move(self, source: str, destination: str) -> None:
        """Make ``destination`` hold what ``source`` held, then remove ``source``.

        ``destination`` never holds a partial object. Raises :class:`ObjectNotFound`.
        """

    # -- redirects -----------------------------------------------------------

    @abstractmethod
    def presign_get(self, key: str, expires_in: int) -> str | None:
        """A URL that serves the object (with ``Range`` support) until it expires, or ``None``."""

    @abstractmethod
    def presign_put(
        self, key: str, expires_in: int, *, sha256: str, size: int | None = None, marker: str | None = None
    ) -> PresignedRequest | None:
        """A request that stores one object whose SHA-256 must be ``sha256``, or ``None``.

        The data plane verifies the digest before the object becomes visible. With
        ``marker``, the object written through this request carries it (see :meth:`marker`).
        """

    @abstractmethod
    def marker(self, key: str) -> str | None:
        """The marker of the presigned PUT that last wrote ``key``; ``None`` after any other write.

        It proves that a particular presigned request (not an earlier write of the
        same bytes by someone else) produced the object.
        """

    # -- multipart -----------------------------------------------------------

    @abstractmethod
    def multipart_create(self, key: str, size: int | None = None) -> str:
        """Start a multipart upload that will become ``key``; returns its upload id.

        With ``size`` (the object's, known up front) every part names its ``offset``
        (see the module docstring): the upload may be written in place.
        """

    @abstractmethod
    def multipart_put_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray, *, offset: int | None = None
    ) -> UploadedPart:
        """Store one part from memory (inline uploads, joined chunks), uncopied. Raises :class:`ObjectNotFound`."""

    @abstractmethod
    def multipart_move_part(
        self, key: str, upload_id: str, number: int, source: str, *, offset: int | None = None
    ) -> UploadedPart:
        """Make the object ``source`` part ``number`` (a streamed body staged first), then remove ``source``.

        Raises :class:`ObjectNotFound` for an unknown upload or source, ``ValueError``
        for a source larger than :data:`MAX_PART_SIZE`.
        """

    @abstractmethod
    def multipart_zero_part(
        self, key: str, upload_id: str, number: int, size: int, *, offset: int | None = None
    ) -> UploadedPart:
        """Make part ``number`` ``size`` zero bytes that the caller does not send.

        Storage fills it itself (S3: a server-side copy from an all-zero object;
        the filesystem: a hole). ``ValueError`` for a size above :data:`MAX_ZERO_PART_SIZE`.
        """

    @abstractmethod
    def multipart_list_uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        """The multipart uploads in progress whose keys start with ``prefix`` (to sweep abandoned ones)."""

    @abstractmethod
    def multipart_presign_part(
        self, key: str, upload_id: str, number: int, expires_in: int, *, offset: int | None = None
    ) -> PresignedRequest | None:
        """A request that uploads part ``number`` (at ``offset``) straight to the data plane, or ``None``."""

    @abstractmethod
    def multipart_list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        """The parts stored so far, by number. Raises :class:`ObjectNotFound`."""

    @abstractmethod
    def multipart_complete(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> ObjectInfo:
        """Join ``parts`` (in order) into ``key`` atomically and end the upload.

        Raises :class:`ObjectNotFound` for an unknown upload and ``ValueError``
        when a part is missing, changed (etag) or smaller than the minimum, or
        (an upload written in place) not where the parts before it end.
        """

    @abstractmethod
    def multipart_abort(self, key: str, upload_id: str) -> None:
        """Discard an upload and its parts; a no-op if it is already gone."""

    # -- conveniences built on the contract ------------------------------------

    def check_parts(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> None:
        """Refuse (``ValueError``) a completion whose parts are missing, changed or too small.

        Backends call this first in :meth:`multipart_complete`, so every backend
        refuses the same completions, whatever its store would have accepted.
        """
        stored = {p.number: p for p in self.multipart_list_parts(key, upload_id)}
        for index, part in enumerate(parts):
            have = stored.get(part.number)
            if have is None or have.etag != part.etag:
                raise ValueError(f"part {part.number} is missing or changed")
            if index < len(parts) - 1 and have.size < MIN_PART_SIZE:
                raise ValueError(f"part {part.number} is smaller than {MIN_PART_SIZE} bytes")

    def delete_many(self, keys: builtins.list[str]) -> int:
        """Delete these objects, missing ones included (a backend may batch: S3 takes 1,000 per request).

        Returns how many were deleted; a backend that cannot tell (S3's batch delete) counts every key.
        Every key is checked before anything is deleted.
        """
        for key in keys:
            check_key(key)
        return sum(1 for key in keys if self.delete(key))

    def sweep_temporary(self, older_than: float) -> tuple[int, int]:
        """Remove the backend's own leftovers of writes that stopped ``older_than`` seconds ago or more.

        Returns how many files and bytes were freed. A backend whose writes
        leave nothing behind when they fail (S3: a PUT is atomic, and abandoned
        multipart uploads are found with :meth:`multipart_list_uploads`) has
        nothing to do.
        """
        return 0, 0

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object below ``prefix``; returns how many were removed."""
        return self.delete_many(list(self.list(prefix)))
