"""Cutting a disk into multipart parts: data parts to send, zero parts for storage to fill.

The input is the disk's data extents in order (from :mod:`._scan`, possibly
still being read); the output, also lazy, is the parts in order, numbered
from 1, tiling the disk. A run of zeros becomes zero parts (nothing is sent)
when it is long enough to be a part of its own; shorter ones ride along in
the data parts around them. S3's rules hold for every part, whatever the
backend, so the plan is the same everywhere:

* every part but the last is at least :data:`~vmregistry.wire.MIN_PART_SIZE`:
  a data run shorter than that takes zeros from the run after it (sent as
  bytes) until it is long enough, or swallows that run if too little would
  be left of it;
* data parts are at most ``part_size``, cut as the data arrives (a part goes
  out before the run that holds it has been read to its end);
* zero parts are at most :data:`ZERO_PART_SIZE` (what S3 copies quickly
  within one request), and zero runs shorter than ``min_zero`` ride along:
  both grow with the disk, so that no disk needs more than
  :data:`~vmregistry.wire.MAX_PARTS` parts (each zero part is at least
  ``min_zero``, and so is the distance between two data parts' ends).

The plan depends only on the extents, the disk's size and ``part_size``, so a
resumed push finds the parts it already stored under the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from vmregistry.extents import Extent, merge
from vmregistry.wire import MAX_PARTS, MAX_ZERO_PART_SIZE, MIN_PART_SIZE

__all__ = ["ZERO_PART_SIZE", "Part", "data_extents", "plan_parts"]

ZERO_PART_SIZE = 256 * 1024 * 1024
"""Zero parts of most disks are at most this (larger disks need larger ones to stay within the part limit)."""


class Part(NamedTuple):
    number: int
    offset: int
    length: int
    zero: bool

    @property
    def end(self) -> int:
        return self.offset + self.length


def _limits(size: int, part_size: int) -> tuple[int, int, int]:
    """(data part size, shortest zero run skipped, zero part size) for a disk of ``size`` bytes."""
    floor = math.ceil(5 * size / MAX_PARTS)  # a fifth of the part limit per kind of part: room to spare
    return (
        max(part_size, floor, MIN_PART_SIZE),
        max(MIN_PART_SIZE, floor),
        min(MAX_ZERO_PART_SIZE, max(ZERO_PART_SIZE, floor)),
    )


def _segments(extents: Iterable[Extent], size: int) -> Iterator[tuple[int, int, bool]]:
    """``(start, end, zero)`` runs covering ``[0, size)``, alternating data and zeros."""
    position = 0
    for offset, length in extents:
        if offset > position:
            yield position, offset, True
        if offset + length > position:
            yield max(offset, position), offset + length, False
            position = offset + length
    if position < size:
        yield position, size, True


def plan_parts(extents: Iterable[Extent], size: int, part_size: int) -> Iterator[Part]:
    """The parts of a disk of ``size`` bytes whose data lies in ``extents`` (in order, possibly lazy)."""
    data_part, min_zero, zero_part = _limits(size, part_size)
    number = 0
    start: int | None = None  # the data not yet in a part: [start, end)
    end = 0

    def part(offset: int, length: int, zero: bool) -> Part:
        nonlocal number
        number += 1
        return Part(number, offset, length, zero)

    for run_start, run_end, zero in _segments(extents, size):
        if zero:
            length = run_end - run_start
            if start is not None and end - start < MIN_PART_SIZE:
                taken = min(MIN_PART_SIZE - (end - start), length)  # too short to be a part: pad it with zeros
                end += taken
                run_start += taken
                length -= taken
            last = run_end == size and length > 0
            if length >= min_zero or last:
                if start is not None:
                    yield part(start, end - start, False)
                    start = None
                count = math.ceil(length / zero_part)
                for index in range(count):
                    low, high = run_start + length * index // count, run_start + length * (index + 1) // count
                    yield part(low, high - low, True)
                continue
            # Too short to skip: these zeros ride along in the data part.
        if start is None:
            start = run_start
        end = run_end
        while end - start > data_part:  # more follows: a full part can go now
            yield part(start, data_part, False)
            start += data_part
    if start is not None:
        yield part(start, end - start, False)
    if number > MAX_PARTS:  # pragma: no cover - the limits above keep every disk within it
        raise ValueError(f"{number} parts: more than {MAX_PARTS}")


def data_extents(parts: Iterable[Part]) -> list[Extent]:
    """The ranges the data parts cover: what a pull must fetch (the rest is zeros storage filled)."""
    return merge(Extent(p.offset, p.length) for p in parts if not p.zero)
