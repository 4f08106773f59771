"""Byte ranges of a disk: which hold data and which are zeros, in text and in files.

A sparse VM disk moves as its data: the client declares the ranges that are
zeros instead of sending them, and records the ranges that hold data in the
image's manifest, so a pull fetches only those. Everything here is about
such ranges, shared by the client, the domain and the filesystem backend:

* :class:`Extent` (offset, length) and the lists of them: sorted, not
  overlapping, inside the disk (:func:`check_extents`), their complement
  (:func:`complement`) and whether one set covers another (:func:`covers`).
* The manifest's text form (:data:`DATA_ANNOTATION`): ``offset+length``
  pairs in decimal, comma-separated, in order (``"0+5242880,67108864+4194304"``);
  an empty string is a disk of zeros only.
* Files: the data regions the filesystem reports (``SEEK_DATA`` /
  ``SEEK_HOLE``: a hole reads as zeros without being read) and a SHA-256 that
  feeds holes from a zero buffer instead of reading them (:func:`hash_file`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from vmregistry.digests import hasher

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "BLOCK",
    "DATA_ANNOTATION",
    "ZERO_BUFFER",
    "Extent",
    "ExtentError",
    "check_extents",
    "complement",
    "covers",
    "data_regions",
    "format_extents",
    "hash_file",
    "hash_range",
    "merge",
    "nonzero_runs",
    "parse_extents",
    "read_buffer",
    "update_with_zeros",
]

DATA_ANNOTATION = "vmregistry.disk.extents"
"""Layer annotation: the ranges of the disk that may hold data; every other byte is zero."""

MAX_TEXT = 1024 * 1024
"""The longest extent list a manifest may carry (10,000 parts of S3's multipart limit fit easily)."""

BLOCK = 1024 * 1024
"""Reads and zero feeds of this size: hashing runs as fast as with larger ones, and memory stays small."""
ZERO_BUFFER = memoryview(bytes(BLOCK))
"""Read-only zeros, fed to hashes for holes and declared zero ranges."""
_SPARE: list[bytearray] = []
_SPARE_LOCK = threading.Lock()


@contextlib.contextmanager
def read_buffer() -> Iterator[memoryview]:
    """A :data:`BLOCK`-sized buffer from a small pool shared by the process's threads.

    Reused rather than allocated per call: a server's requests run on short-lived
    threads, and buffers each freed by another thread would leave memory behind in
    the allocator's per-thread arenas, growing the process with the work done.
    """
    with _SPARE_LOCK:
        buffer = _SPARE.pop() if _SPARE else bytearray(BLOCK)
    try:
        with memoryview(buffer) as view:
            yield view
    finally:
        with _SPARE_LOCK:
            if len(_SPARE) < 16:
                _SPARE.append(buffer)


class ExtentError(ValueError):
    """An extent list that is malformed, unsorted, overlapping, empty-ranged or outside its disk."""


class Extent(NamedTuple):
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def check_extents(extents: Iterable[Extent], size: int) -> list[Extent]:
    """The extents as a list, if each is non-empty, inside ``[0, size)`` and after the one before it."""
    checked: list[Extent] = []
    position = 0
    for offset, length in extents:
        if offset < 0 or length <= 0:
            raise ExtentError(f"extent {offset}+{length}: offsets are >= 0 and lengths > 0")
        if offset < position:
            raise ExtentError(f"extent {offset}+{length} overlaps or precedes the one before it (ends at {position})")
        if offset + length > size:
            raise ExtentError(f"extent {offset}+{length} ends past the disk's {size} bytes")
        checked.append(Extent(offset, length))
        position = offset + length
    return checked


def parse_extents(text: str, size: int) -> list[Extent]:
    """The extents of ``text`` (:data:`DATA_ANNOTATION`'s form), checked against a disk of ``size`` bytes."""
    if len(text) > MAX_TEXT:
        raise ExtentError(f"an extent list is at most {MAX_TEXT} characters")
    if not text:
        return []
    extents = []
    for item in text.split(","):
        offset, plus, length = item.partition("+")
        if not plus or not offset.isascii() or not offset.isdigit() or not length.isascii() or not length.isdigit():
            raise ExtentError(f"not an extent ('offset+length'): {item[:60]!r}")
        extents.append(Extent(int(offset), int(length)))
    return check_extents(extents, size)


def format_extents(extents: Iterable[Extent]) -> str:
    return ",".join(f"{offset}+{length}" for offset, length in extents)


def merge(extents: Iterable[Extent]) -> list[Extent]:
    """Sorted, with touching or overlapping extents joined into one."""
    merged: list[Extent] = []
    for offset, length in sorted(extents):
        if length <= 0:
            continue
        if merged and offset <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Extent(last.offset, max(last.end, offset + length) - last.offset)
        else:
            merged.append(Extent(offset, length))
    return merged


def complement(extents: Iterable[Extent], size: int) -> list[Extent]:
    """The ranges of ``[0, size)`` that no extent covers."""
    gaps = []
    position = 0
    for offset, length in merge(extents):
        if offset > position:
            gaps.append(Extent(position, offset - position))
        position = max(position, offset + length)
    if position < size:
        gaps.append(Extent(position, size - position))
    return gaps


def covers(outer: Iterable[Extent], inner: Iterable[Extent]) -> bool:
    """Does every byte of ``inner`` lie in ``outer``?"""
    known = merge(outer)
    index = 0
    for offset, length in merge(inner):
        while index < len(known) and known[index].end <= offset:
            index += 1
        if index == len(known) or known[index].offset > offset or known[index].end < offset + length:
            return False
    return True


def data_regions(fd: int, size: int) -> Iterator[Extent]:
    """The regions of an open file the filesystem reports as data, in order; holes are the rest.

    Where the filesystem cannot tell (no ``SEEK_DATA``), the whole file is one region.
    """
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # only a hole from here to the end
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield Extent(position, size - position)
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield Extent(start, end - start)
        position = end


def nonzero_runs(buffer: bytes | bytearray | memoryview, n: int, granule: int) -> Iterator[tuple[int, int]]:
    """The runs ``(start, end)`` of granules of the first ``n`` bytes that are not all zero, in order."""
    view = memoryview(buffer)
    zeros = bytes(granule)  # calloc'd; sliced whole, it is not copied
    start = -1
    for low in range(0, n, granule):
        block = view[low : min(low + granule, n)]
        # Data rarely starts or ends with a zero byte: one look settles most granules. Otherwise
        # bytes == bytes (memcmp); comparing the memoryview itself would go byte by byte, 70x slower.
        zero = block[0] == 0 and block[-1] == 0 and block.tobytes() == zeros[: len(block)]
        if zero and start >= 0:
            yield start, low
            start = -1
        elif not zero and start < 0:
            start = low
    if start >= 0:
        yield start, n


def update_with_zeros(digest: _Hash, length: int) -> None:
    """Feed ``length`` zero bytes to a hashlib object, from memory."""
    while length > 0:
        n = min(length, BLOCK)
        digest.update(ZERO_BUFFER[:n])
        length -= n


def hash_range(digest: _Hash, fd: int, start: int, end: int, buffer: memoryview) -> None:
    """Feed bytes ``[start, end)`` of an open file to ``digest``, read into ``buffer``; EOFError if it ends first."""
    while start < end:
        n = os.preadv(fd, [buffer[: min(len(buffer), end - start)]], start)
        if n <= 0:
            raise EOFError(f"the file ends at {start}, before {end}")
        digest.update(buffer[:n])
        start += n


def hash_file(fd: int, size: int, algorithm: str = "sha256") -> str:
    """The hex digest of the first ``size`` bytes of an open file, holes hashed from memory."""
    digest = hasher(algorithm)
    position = 0
    with read_buffer() as buffer:
        for offset, length in data_regions(fd, size):
            update_with_zeros(digest, offset - position)
            hash_range(digest, fd, offset, offset + length, buffer)
            position = offset + length
    update_with_zeros(digest, size - position)
    return digest.hexdigest()
