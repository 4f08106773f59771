"""Reading a disk once, in order: its SHA-256, its format, and the ranges that hold data, found as they are read.

What the filesystem reports as holes (``SEEK_DATA`` / ``SEEK_HOLE``) is never
read: it is hashed from a zero buffer. What it reports as data is read in
1 MiB blocks, hashed, and checked for zeros in 64 KiB granules (a disk written
with zeros, or one copied without keeping its holes, has those too). Runs of
data separated by less than 1 MiB of zeros are reported as one: the planner
(:mod:`._plan`) lets zero runs shorter than a part ride along anyway.

:class:`DiskScan` is an iterator of data extents, so a push can plan and send
parts while the rest of the disk is still being read (:mod:`._parts`): a long
run of data is reported piece by piece as it is read. The digest is known
once the iteration ends. Comparisons against zeros are
``bytes == bytes`` (``memcmp``): a memoryview comparison goes element by
element, 70 times slower.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vmregistry.client._errors import UsageError
from vmregistry.client._image import ISO_MAGIC_OFFSET, DiskInfo, detect_format
from vmregistry.extents import Extent, data_regions, nonzero_runs, update_with_zeros

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["GRANULE", "DiskScan", "hash_disk", "scan_disk"]

READ_SIZE = 1024 * 1024
GRANULE = 64 * 1024
JOIN_GAP = 1024 * 1024
REPORT = 8 * 1024 * 1024
"""A data run is reported in pieces of this much while it is read: parts go out before it ends."""
_ZERO_READ = bytes(READ_SIZE)
_HEAD = ISO_MAGIC_OFFSET + 5


class DiskScan:
    """Iterate for the data extents; then :meth:`info` has the digest, size and format."""

    def __init__(self, path: Path, on_read: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.on_read = on_read
        self._info: DiskInfo | None = None
        self._extents: list[Extent] = []

    def info(self) -> DiskInfo:
        if self._info is None:
            raise RuntimeError("the disk has not been read to its end yet")
        return self._info

    def __iter__(self) -> Iterator[Extent]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise UsageError(f"cannot read disk {self.path}: {exc.strerror or exc}") from None
        try:
            yield from self._scan(fd)
        except OSError as exc:
            raise UsageError(f"cannot read disk {self.path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def _scan(self, fd: int) -> Iterator[Extent]:
        size = os.fstat(fd).st_size
        digest = hashlib.sha256()
        head = bytearray(_HEAD)
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        run: list[int] = []  # the data run being gathered: [start, end]
        position = 0
        for region in data_regions(fd, size):
            self._zeros(digest, region.offset - position)
            offset = region.offset
            while offset < region.end:
                n = os.preadv(fd, [view[: min(READ_SIZE, region.end - offset)]], offset)
                if n <= 0:
                    raise UsageError(f"{self.path} shrank while it was being read")
                digest.update(view[:n])
                if offset < _HEAD:
                    head[offset : min(n + offset, _HEAD)] = view[: min(n, _HEAD - offset)]
                for start, end in _data_in(buffer, n, offset):
                    if run and start - run[1] < JOIN_GAP:
                        run[1] = end
                    else:
                        if run and run[1] > run[0]:
                            yield self._found(run)
                        run = [start, end]
                offset += n
                if run and run[1] - run[0] >= REPORT:
                    yield self._found(run)  # the run goes on: report what is read of it so far
                    run = [run[1], run[1]]
                if self.on_read is not None:
                    self.on_read(n)
            position = region.end
        self._zeros(digest, size - position)
        if run and run[1] > run[0]:
            yield self._found(run)
        fmt, virtual = detect_format(bytes(head))
        self._info = DiskInfo(
            self.path, size, f"sha256:{digest.hexdigest()}", fmt, virtual, extents=tuple(self._extents)
        )

    def _found(self, run: list[int]) -> Extent:
        extent = Extent(run[0], run[1] - run[0])
        last = self._extents[-1] if self._extents else None
        if last is not None and last.end == extent.offset:  # a piece of a run already reported: one extent
            self._extents[-1] = Extent(last.offset, last.length + extent.length)
        else:
            self._extents.append(extent)
        return extent

    def _zeros(self, digest: _Hash, length: int) -> None:
        update_with_zeros(digest, length)
        if self.on_read is not None and length:
            self.on_read(length)


def _data_in(buffer: bytearray, n: int, offset: int) -> Iterator[tuple[int, int]]:
    """The runs of non-zero granules in the first ``n`` bytes of ``buffer`` (read at ``offset``), absolute."""
    if n == READ_SIZE and buffer == _ZERO_READ:
        return
    for start, end in nonzero_runs(buffer, n, GRANULE):
        yield offset + start, offset + end


def scan_disk(path: Path, on_read: Callable[[int], None] | None = None) -> DiskInfo:
    """Read the whole disk now: its :class:`DiskInfo`, data extents included."""
    scan = DiskScan(path, on_read)
    for _ in scan:
        pass
    return scan.info()


hash_disk = scan_disk
"""The name this had before disks were read for their extents too."""
