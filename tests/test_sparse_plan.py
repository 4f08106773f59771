"""The arithmetic of sparse disks: extent lists, reading a disk for its data, and cutting it into parts.

No server here: extent lists are checked as the registry checks a manifest's
annotation (sorted, not overlapping, inside the disk); a real sparse file is
read by the client's scanner, whose digest must be the file's and whose
extents must hold every data byte; and the plan for many random disks must
obey S3's part rules while never declaring zero a byte that holds data.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from vmregistry.client._plan import Part, _limits, data_extents, plan_parts
from vmregistry.client._scan import scan_disk
from vmregistry.extents import (
    Extent,
    ExtentError,
    complement,
    covers,
    format_extents,
    hash_file,
    merge,
    parse_extents,
)
from vmregistry.wire import MAX_PARTS, MIN_PART_SIZE

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0+10,5+10", "overlaps"),
        ("20+5,0+5", "overlaps or precedes"),
        ("90+20", "past the disk"),
        ("0+0", "lengths > 0"),
        ("5-10", "not an extent"),
        ("+5", "not an extent"),
        ("0x10+5", "not an extent"),
        ("1+2,", "not an extent"),
    ],
)
def test_extent_lists_that_contradict_their_disk_are_refused(text: str, problem: str) -> None:
    # GIVEN a disk of 100 bytes WHEN an extent list overlaps, is unsorted, empty-ranged, out of range or malformed
    with pytest.raises(ExtentError, match=problem):
        parse_extents(text, 100)


def test_extent_lists_read_back_and_their_complement_is_the_zeros() -> None:
    extents = parse_extents("0+10,30+5,90+10", 100)
    assert format_extents(extents) == "0+10,30+5,90+10"
    assert complement(extents, 100) == [Extent(10, 20), Extent(35, 55)]
    assert parse_extents("", 100) == []
    assert covers([Extent(0, 50), Extent(50, 10)], [Extent(5, 55)])
    assert not covers([Extent(0, 50)], [Extent(45, 10)])
    assert merge([Extent(10, 5), Extent(0, 10), Extent(30, 1)]) == [Extent(0, 15), Extent(30, 1)]


def test_a_sparse_file_is_read_for_its_data_and_hashed_with_its_holes(tmp_path: Path) -> None:
    # GIVEN a 64 MiB file: data at 8 MiB, explicit zeros written at 20 MiB (not a hole), data at 40 MiB
    disk = tmp_path / "disk.img"
    first, second = os.urandom(3 * MiB), os.urandom(MiB + 5)
    with open(disk, "wb") as handle:
        handle.truncate(64 * MiB)
        handle.seek(8 * MiB)
        handle.write(first)
        handle.seek(20 * MiB)
        handle.write(bytes(4 * MiB))
        handle.seek(40 * MiB)
        handle.write(second)
    expected = hashlib.sha256(disk.read_bytes()).hexdigest()

    # WHEN the client's scanner reads it
    info = scan_disk(disk)

    # THEN the digest is the file's, and the extents are its data (to the 64 KiB granule the scanner checks for
    # zeros), not its holes nor the zeros written into it
    assert info.digest == f"sha256:{expected}"
    assert info.extents is not None
    assert info.extents[0] == Extent(8 * MiB, 3 * MiB)
    assert info.extents[1].offset == 40 * MiB
    assert MiB + 5 <= info.extents[1].length <= MiB + 64 * 1024
    assert len(info.extents) == 2
    fd = os.open(disk, os.O_RDONLY)
    try:
        assert hash_file(fd, 64 * MiB) == expected
    finally:
        os.close(fd)


def check_plan(extents: list[Extent], size: int, part_size: int) -> list[Part]:
    parts = list(plan_parts(extents, size, part_size))
    data_part, _, zero_part = _limits(size, part_size)
    position = 0
    for index, part in enumerate(parts):
        assert (part.number, part.offset) == (index + 1, position)
        assert part.length > 0
        assert part.length <= (zero_part if part.zero else data_part)
        if index < len(parts) - 1:
            assert part.length >= MIN_PART_SIZE, f"part {part.number} is too small for S3"
        position = part.end
    assert position == size
    assert len(parts) <= MAX_PARTS
    assert covers(complement(extents, size), [Extent(p.offset, p.length) for p in parts if p.zero])
    assert covers(data_extents(parts), extents)
    return parts


def test_plans_tile_the_disk_by_s3_rules_and_declare_only_zeros() -> None:
    rng = random.Random(14)
    for _ in range(500):
        # GIVEN a random disk: size, data extents, part size
        size = rng.choice([rng.randrange(1, 40 * MiB), rng.randrange(1, 3000 * MiB)])
        points = sorted(rng.randrange(size) for _ in range(2 * rng.randrange(40)))
        extents = merge(Extent(a, b - a) for a, b in zip(points[::2], points[1::2], strict=True))
        # WHEN it is planned THEN the plan holds (check_plan)
        check_plan(extents, size, rng.choice([5 * MiB, 8 * MiB, 64 * MiB]))


def test_a_plan_sends_the_data_of_a_sparse_disk_and_a_dense_disk_in_full_parts() -> None:
    # GIVEN the benchmark's disk: 2 GiB, 150 scattered 4 MiB extents of data
    slots = sorted(random.Random(14).sample(range(512), 150))
    sparse = check_plan(merge(Extent(s * 4 * MiB, 4 * MiB) for s in slots), 2048 * MiB, 64 * MiB)
    # THEN what is sent is the data and a little padding (each part is at least 5 MiB), not the 2 GiB
    sent = sum(p.length for p in sparse if not p.zero)
    assert 600 * MiB <= sent < 800 * MiB
    # AND a dense disk is 64 MiB parts at their grid offsets, as before
    dense = check_plan([Extent(0, 2048 * MiB)], 2048 * MiB, 64 * MiB)
    assert {(p.length, p.zero) for p in dense} == {(64 * MiB, False)}
    # AND a disk of zeros is zero parts only
    assert all(p.zero for p in check_plan([], 2048 * MiB, 64 * MiB))


def test_a_plan_is_the_same_when_the_extents_arrive_lazily() -> None:
    # GIVEN extents produced one at a time (a disk still being read) THEN the plan is the one of the whole list
    extents = [Extent(i * 9 * MiB, MiB) for i in range(50)]
    assert list(plan_parts(iter(extents), 500 * MiB, 8 * MiB)) == list(plan_parts(extents, 500 * MiB, 8 * MiB))
