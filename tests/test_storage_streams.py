"""The streaming half of the storage contract, checked the same way against every backend.

``receive`` takes a body of any size as a stream (the local server's staged
bodies and data plane); ``multipart_move_part`` turns a staged body into a
part; ``multipart_list_uploads`` finds uploads nobody will finish. Bodies here
cross the S3 backend's first-part size, so its multipart path runs too.
"""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from vmregistry.storage import MIN_PART_SIZE, ChecksumMismatch, ObjectNotFound, Storage

from tests.backends import backend

__all__ = ["backend"]

BIG = 8 * 1024 * 1024 + 5 * 1024 * 1024 + 123  # more than one part of a server-side multipart upload


class Trickle:
    """A socket-like source: at most ``step`` bytes per read, optionally ending early."""

    def __init__(self, data: bytes, step: int = 64 * 1024) -> None:
        self._stream = io.BytesIO(data)
        self._step = step

    def readinto(self, buffer: memoryview) -> int:
        return self._stream.readinto(buffer[: self._step])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1000, BIG], ids=["empty", "small", "multipart"])
@pytest.mark.parametrize("known_length", [True, False], ids=["content-length", "chunked"])
def test_receive_stores_the_stream_and_its_digest(backend: Storage, size: int, known_length: bool) -> None:
    # GIVEN a body that arrives a little at a time, with or without its length
    data = os.urandom(size)
    # WHEN it is received
    info = backend.receive("streams/object", Trickle(data), len(data) if known_length else None)
    # THEN the object is exactly the body, and the answer carries its size and SHA-256
    assert (info.size, info.sha256) == (size, sha(data))
    assert backend.read("streams/object") == data
    backend.delete("streams/object")


def test_receive_with_a_wrong_digest_stores_nothing(backend: Storage) -> None:
    data = os.urandom(BIG)
    with pytest.raises(ChecksumMismatch):
        backend.receive("streams/wrong", Trickle(data), len(data), sha256=sha(b"something else"))
    # THEN nothing is visible, and no multipart upload stays open (the fixture checks)
    assert backend.stat("streams/wrong") is None


def test_receive_of_a_body_that_ends_early_stores_nothing(backend: Storage) -> None:
    data = os.urandom(BIG)
    with pytest.raises(EOFError):
        backend.receive("streams/short", Trickle(data), len(data) + 1000)
    assert backend.stat("streams/short") is None


def test_receive_replaces_an_object_whole(backend: Storage) -> None:
    backend.write("streams/replaced", b"old")
    backend.receive("streams/replaced", Trickle(b"new bytes"), None)
    assert backend.read("streams/replaced") == b"new bytes"
    backend.delete("streams/replaced")


def test_a_staged_object_becomes_a_part(backend: Storage) -> None:
    # GIVEN a multipart upload and two staged bodies
    first, last = os.urandom(MIN_PART_SIZE), os.urandom(777)
    backend.receive("uploads/a/body", Trickle(first), len(first))
    backend.receive("uploads/b/body", Trickle(last), None)
    upload = backend.multipart_create("mp/moved")
    # WHEN they are moved in as parts 1 and 2
    one = backend.multipart_move_part("mp/moved", upload, 1, "uploads/a/body")
    two = backend.multipart_move_part("mp/moved", upload, 2, "uploads/b/body")
    # THEN they are gone as objects and listed as parts, and the upload completes to their concatenation
    assert backend.stat("uploads/a/body") is None
    assert backend.stat("uploads/b/body") is None
    parts = backend.multipart_list_parts("mp/moved", upload)
    assert [(p.number, p.size, p.etag) for p in parts] == [(1, len(first), one.etag), (2, 777, two.etag)]
    backend.multipart_complete("mp/moved", upload, parts)
    assert backend.read("mp/moved") == first + last
    backend.delete("mp/moved")


def test_moving_a_missing_object_into_a_part(backend: Storage) -> None:
    upload = backend.multipart_create("mp/none")
    with pytest.raises(ObjectNotFound):
        backend.multipart_move_part("mp/none", upload, 1, "uploads/missing/body")
    backend.multipart_abort("mp/none", upload)


def test_uploads_in_progress_are_listed_by_prefix(backend: Storage) -> None:
    # GIVEN two multipart uploads in progress, one under uploads/
    inside = backend.multipart_create("uploads/u1/data")
    backend.multipart_put_part("uploads/u1/data", inside, 1, b"part")
    outside = backend.multipart_create("other/data")
    # WHEN uploads under uploads/ are listed
    found = list(backend.multipart_list_uploads("uploads/"))
    # THEN only that one, dated no earlier than its last part
    assert [(u.key, u.upload_id) for u in found] == [("uploads/u1/data", inside)]
    assert found[0].modified > 0
    backend.multipart_abort("uploads/u1/data", inside)
    backend.multipart_abort("other/data", outside)
    assert list(backend.multipart_list_uploads("uploads/")) == []
