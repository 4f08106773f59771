"""Zero parts and uploads of a known size: the contract on every backend, and the filesystem's in-place layout.

A zero part is filled by storage (S3: a copy of an all-zero object in the
bucket; the filesystem: a hole), and an upload created with its size takes
each part at its offset, in any order. On the filesystem such an upload is
one file: completion renames it (the same inode becomes the object), zero
ranges stay holes, and a part that does not fit, or does not follow from the
parts before it, is refused.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from vmregistry import paths
from vmregistry.storage import MAX_ZERO_PART_SIZE, MIN_PART_SIZE, ObjectNotFound, Storage
from vmregistry.storage.filesystem import FilesystemStorage

from tests.backends import backend
from tests.test_storage_conformance import put_part_by_url, sha

__all__ = ["backend"]

MiB = 1024 * 1024


def clean_fill(storage: Storage) -> None:
    """The fill objects the S3 backend keeps for zero parts are not a test's leftovers."""
    storage.delete_prefix(paths.FILL_PREFIX)


def test_zero_parts_are_filled_by_storage(backend: Storage) -> None:
    # GIVEN an upload of data, then 9 MiB of zeros declared as a part, then a short last part by URL
    first, last = os.urandom(MIN_PART_SIZE), os.urandom(1234)
    upload = backend.multipart_create("zp/object")
    backend.multipart_put_part("zp/object", upload, 1, first)
    zero = backend.multipart_zero_part("zp/object", upload, 2, 9 * MiB)
    put_part_by_url(backend, "zp/object", upload, 3, last)

    # WHEN the parts are listed and completed
    parts = backend.multipart_list_parts("zp/object", upload)
    info = backend.multipart_complete("zp/object", upload, parts)

    # THEN the zero part is listed like any part, and the object holds the zeros in place
    assert (zero.number, zero.size) == (2, 9 * MiB)
    assert [(p.number, p.size) for p in parts] == [(1, MIN_PART_SIZE), (2, 9 * MiB), (3, 1234)]
    expected = first + bytes(9 * MiB) + last
    assert info.size == len(expected)
    assert info.sha256 in (None, sha(expected))
    assert backend.read("zp/object") == expected
    backend.delete("zp/object")
    clean_fill(backend)


def test_a_sized_upload_takes_parts_at_their_offsets_in_any_order(backend: Storage) -> None:
    # GIVEN an upload created with its size, and three parts sent last first, the middle one zeros
    first, last = os.urandom(MIN_PART_SIZE + 7), os.urandom(MiB)
    size = len(first) + 6 * MiB + len(last)
    upload = backend.multipart_create("zp/sized", size)
    put_part_by_url(backend, "zp/sized", upload, 3, last, offset=size - len(last))
    backend.multipart_zero_part("zp/sized", upload, 2, 6 * MiB, offset=len(first))
    backend.multipart_put_part("zp/sized", upload, 1, first, offset=0)
    assert backend.stat("zp/sized") is None  # nothing visible before completion

    # WHEN it completes
    info = backend.multipart_complete("zp/sized", upload, backend.multipart_list_parts("zp/sized", upload))

    # THEN the object is the parts in number order
    expected = first + bytes(6 * MiB) + last
    assert info.size == size
    assert info.sha256 in (None, sha(expected))
    assert backend.read("zp/sized") == expected
    backend.delete("zp/sized")
    clean_fill(backend)


def test_a_zero_part_has_a_size_storage_can_fill(backend: Storage) -> None:
    upload = backend.multipart_create("zp/limits")
    for size in (0, MAX_ZERO_PART_SIZE + 1):
        with pytest.raises(ValueError, match="zero part"):
            backend.multipart_zero_part("zp/limits", upload, 1, size)
    backend.multipart_abort("zp/limits", upload)
    with pytest.raises(ObjectNotFound):
        backend.multipart_zero_part("zp/limits", upload, 1, MiB)
    clean_fill(backend)


# -- the filesystem writes a sized upload in place ------------------------------------


@pytest.fixture
def fs(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(tmp_path / "root")


def upload_dir(fs: FilesystemStorage, upload: str) -> Path:
    return fs.root / ".multipart" / upload


def test_completion_renames_the_file_the_parts_were_written_into(fs: FilesystemStorage) -> None:
    # GIVEN a 64 MiB upload written in place: 5 MiB of data, then 59 MiB declared zero
    data = os.urandom(5 * MiB)
    upload = fs.multipart_create("blobs/x", 64 * MiB)
    fs.receive_part("blobs/x", upload, 1, io.BytesIO(data), len(data), offset=0)
    fs.multipart_zero_part("blobs/x", upload, 2, 59 * MiB, offset=5 * MiB)
    inode = os.stat(upload_dir(fs, upload) / "data").st_ino

    # WHEN it completes
    info = fs.multipart_complete("blobs/x", upload, fs.multipart_list_parts("blobs/x", upload))

    # THEN the object is that very file (no second copy), its zeros are a hole, its digest computed
    published = os.stat(fs.path("blobs/x"))
    assert published.st_ino == inode
    assert published.st_blocks * 512 < 8 * MiB
    assert info.sha256 == sha(data + bytes(59 * MiB))
    assert not upload_dir(fs, upload).exists()


def test_parts_that_do_not_fit_or_do_not_follow_are_refused(fs: FilesystemStorage) -> None:
    # GIVEN a 12 MiB upload written in place
    upload = fs.multipart_create("blobs/y", 12 * MiB)
    # WHEN a part would end past the declared size, or names no offset THEN it is refused before writing
    with pytest.raises(ValueError, match="does not fit"):
        fs.receive_part("blobs/y", upload, 2, io.BytesIO(bytes(6 * MiB)), 6 * MiB, offset=7 * MiB)
    with pytest.raises(ValueError, match="offset"):
        fs.multipart_put_part("blobs/y", upload, 1, b"x")
    # WHEN the parts stored overlap (part 2 starts inside part 1)
    fs.multipart_put_part("blobs/y", upload, 1, os.urandom(6 * MiB), offset=0)
    fs.multipart_put_part("blobs/y", upload, 2, os.urandom(6 * MiB), offset=5 * MiB)
    # THEN completion refuses them, and nothing is published
    with pytest.raises(ValueError, match="part 2 is at offset"):
        fs.multipart_complete("blobs/y", upload, fs.multipart_list_parts("blobs/y", upload))
    assert fs.stat("blobs/y") is None
    fs.multipart_abort("blobs/y", upload)
    assert not upload_dir(fs, upload).exists()


def test_a_part_that_ends_early_is_not_stored(fs: FilesystemStorage) -> None:
    # GIVEN a part whose body ends 1 MiB early (a client that died midway)
    upload = fs.multipart_create("blobs/z", 8 * MiB)
    with pytest.raises(EOFError):
        fs.receive_part("blobs/z", upload, 1, io.BytesIO(bytes(7 * MiB)), 8 * MiB, offset=0)
    # THEN it has no record: a resuming client sends it again
    assert fs.multipart_list_parts("blobs/z", upload) == []
    fs.multipart_abort("blobs/z", upload)


def test_a_zero_part_over_written_bytes_makes_them_zeros(fs: FilesystemStorage) -> None:
    # GIVEN data written at a range that a later request declares zero (a client that changed its mind)
    upload = fs.multipart_create("blobs/w", 6 * MiB)
    fs.multipart_put_part("blobs/w", upload, 1, os.urandom(6 * MiB), offset=0)
    part = fs.multipart_zero_part("blobs/w", upload, 1, 6 * MiB, offset=0)
    # WHEN it completes THEN the object is zeros
    fs.multipart_complete("blobs/w", upload, [part])
    assert fs.read("blobs/w") == bytes(6 * MiB)


def test_an_abandoned_upload_written_in_place_is_found_and_aborted(fs: FilesystemStorage) -> None:
    # GIVEN an in-place upload nobody completes
    upload = fs.multipart_create("uploads/abc/data", 10 * MiB)
    fs.multipart_put_part("uploads/abc/data", upload, 1, os.urandom(MiB), offset=0)
    # THEN the sweep's listing sees it, and aborting it removes its file and records
    found = [u for u in fs.multipart_list_uploads("uploads/") if u.upload_id == upload]
    assert [u.key for u in found] == ["uploads/abc/data"]
    fs.multipart_abort("uploads/abc/data", upload)
    assert list(fs.multipart_list_uploads("uploads/")) == []
    assert not upload_dir(fs, upload).exists()


def hashed_prefix(fs: FilesystemStorage, upload: str) -> int:
    """How far the upload's SHA-256 has been computed as its parts landed."""
    import json

    return int(json.loads((upload_dir(fs, upload) / "hash").read_text())["offset"])


def test_parts_are_hashed_as_they_land_in_order(fs: FilesystemStorage) -> None:
    # GIVEN an in-place upload whose parts land out of order: 2, then 3 (zeros), then 1
    first, second = os.urandom(5 * MiB), os.urandom(5 * MiB)
    upload = fs.multipart_create("blobs/h", 16 * MiB)
    fs.multipart_put_part("blobs/h", upload, 2, second, offset=5 * MiB)
    fs.multipart_zero_part("blobs/h", upload, 3, 6 * MiB, offset=10 * MiB)
    assert not (upload_dir(fs, upload) / "hash").exists() or hashed_prefix(fs, upload) == 0
    # WHEN the first part lands THEN the hash covers all three: completion has nothing left to read
    fs.multipart_put_part("blobs/h", upload, 1, first, offset=0)
    assert hashed_prefix(fs, upload) == 16 * MiB
    info = fs.multipart_complete("blobs/h", upload, fs.multipart_list_parts("blobs/h", upload))
    assert info.sha256 == sha(first + second + bytes(6 * MiB))


def test_a_part_sent_again_after_it_was_hashed_is_hashed_again(fs: FilesystemStorage) -> None:
    # GIVEN two parts hashed as they landed, then the first sent again with other bytes
    upload = fs.multipart_create("blobs/r", 10 * MiB)
    fs.multipart_put_part("blobs/r", upload, 1, os.urandom(5 * MiB), offset=0)
    fs.multipart_put_part("blobs/r", upload, 2, bytes(5 * MiB), offset=5 * MiB)
    replaced = os.urandom(5 * MiB)
    fs.multipart_put_part("blobs/r", upload, 1, replaced, offset=0)
    # WHEN it completes THEN the digest is of the bytes it holds now, not of what was hashed first
    info = fs.multipart_complete("blobs/r", upload, fs.multipart_list_parts("blobs/r", upload))
    assert info.sha256 == sha(replaced + bytes(5 * MiB))
