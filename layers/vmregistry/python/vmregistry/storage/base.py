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
  the object appears only when :meth:`Storage.multipart_complete` succeeds.
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
import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypeVar

__all__ = [
    "KEY_COMPONENT",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MAX_SINGLE_PUT_SIZE",
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


class StorageError(Exception):
    """Base of every error a backend raises."""


class InvalidKey(StorageError, ValueError):
    """A key outside the grammar: a bug in the caller (keys come from :mod:`vmregistry.paths`), never stored."""


KEY_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:!-]*")
"""One component of a key: no dot first (no ``.``, ``..`` or hidden file), no separator, nothing outside
ASCII. ``!`` ends catalog entries (:mod:`vmregistry.paths`); ``:`` only appears in keys of the first
layout (``manifests/<name>/sha256:<hex>/...``), which ``vmregistry reindex`` reads to migrate them."""
_PARTIAL_COMPONENT = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.:!-]*)?")
MAX_KEY_LENGTH = 1024
"""S3's limit, in bytes (keys are ASCII)."""


def check_key(key: str) -> str:
    """``key`` if it is well formed; :class:`InvalidKey` otherwise."""
    if not key or len(key) > MAX_KEY_LENGTH or any(KEY_COMPONENT.fullmatch(c) is None for c in key.split("/")):
        raise InvalidKey(f"invalid storage key {key[:200]!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: whole components, then possibly the start of one (``catalog/te``), or nothing."""
    *whole, partial = prefix.split("/")
    if (
        len(prefix) > MAX_KEY_LENGTH
        or any(KEY_COMPONENT.fullmatch(c) is None for c in whole)
        or _PARTIAL_COMPONENT.fullmatch(partial) is None
    ):
        raise InvalidKey(f"invalid storage prefix {prefix[:200]!r}")
    return prefix


_F = TypeVar("_F", bound=Callable[..., Any])

_KEYED = (
    "stat",
    "read",
    "open",
    "write",
    "delete",
    "presign_get",
    "presign_put",
    "marker",
    "multipart_create",
    "multipart_put_part",
    "multipart_presign_part",
    "multipart_list_parts",
    "multipart_complete",
    "multipart_abort",
    "receive",
)
"""Methods whose first argument is a key."""


def _checking_key(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Storage, key: str, *args: Any, **kwargs: Any) -> Any:
        return method(self, check_key(key), *args, **kwargs)

    return checked  # type: ignore[return-value]


def _checking_move(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Storage, source: str, destination: str) -> Any:
        return method(self, check_key(source), check_key(destination))

    return checked  # type: ignore[return-value]


def _checking_many(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Storage, keys: builtins.list[str]) -> Any:
        return method(self, [check_key(key) for key in keys])

    return checked  # type: ignore[return-value]


def _checking_list(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Storage, prefix: str, *, start_after: str | None = None, page_size: int | None = None) -> Any:
        if start_after is not None:
            check_prefix(start_after)
        return method(self, check_prefix(prefix), start_after=start_after, page_size=page_size)

    return checked  # type: ignore[return-value]


def _checking_part_move(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Storage, key: str, upload_id: str, number: int, source: str) -> Any:
        return method(self, check_key(key), upload_id, number, check_key(source))

    return checked  # type: ignore[return-value]


def _checking_uploads(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Storage, prefix: str) -> Any:
        return method(self, check_prefix(prefix))

    return checked  # type: ignore[return-value]


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
        for attribute in _KEYED:
            if attribute in cls.__dict__:
                setattr(cls, attribute, _checking_key(cls.__dict__[attribute]))
        if "move" in cls.__dict__:
            cls.move = _checking_move(cls.__dict__["move"])  # type: ignore[method-assign]
        if "list" in cls.__dict__:
            cls.list = _checking_list(cls.__dict__["list"])  # type: ignore[method-assign]
        if "scan" in cls.__dict__:
            cls.scan = _checking_list(cls.__dict__["scan"])  # type: ignore[method-assign]
        if "delete_many" in cls.__dict__:
            cls.delete_many = _checking_many(cls.__dict__["delete_many"])  # type: ignore[method-assign]
        if "multipart_move_part" in cls.__dict__:
            cls.multipart_move_part = _checking_part_move(cls.__dict__["multipart_move_part"])  # type: ignore[method-assign]
        if "multipart_list_uploads" in cls.__dict__:
            cls.multipart_list_uploads = _checking_uploads(cls.__dict__["multipart_list_uploads"])  # type: ignore[method-assign]

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
    def multipart_create(self, key: str) -> str:
        """Start a multipart upload that will become ``key``; returns its upload id."""

    @abstractmethod
    def multipart_put_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        """Store one part from memory (inline uploads). Raises :class:`ObjectNotFound`."""

    @abstractmethod
    def multipart_move_part(self, key: str, upload_id: str, number: int, source: str) -> UploadedPart:
        """Make the object ``source`` part ``number`` (a streamed body staged first), then remove ``source``.

        Raises :class:`ObjectNotFound` for an unknown upload or source, ``ValueError``
        for a source larger than :data:`MAX_PART_SIZE`.
        """

    @abstractmethod
    def multipart_list_uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        """The multipart uploads in progress whose keys start with ``prefix`` (to sweep abandoned ones)."""

    @abstractmethod
    def multipart_presign_part(self, key: str, upload_id: str, number: int, expires_in: int) -> PresignedRequest | None:
        """A request that uploads part ``number`` straight to the data plane, or ``None``."""

    @abstractmethod
    def multipart_list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        """The parts stored so far, by number. Raises :class:`ObjectNotFound`."""

    @abstractmethod
    def multipart_complete(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> ObjectInfo:
        """Join ``parts`` (in order) into ``key`` atomically and end the upload.

        Raises :class:`ObjectNotFound` for an unknown upload and ``ValueError``
        when a part is missing, changed (etag) or smaller than the minimum.
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
