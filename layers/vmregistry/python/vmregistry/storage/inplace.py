"""Multipart uploads written in place: each part at its offset in one file, so completion copies nothing.

The filesystem backend uses this layout for an upload created with its size
(:meth:`FilesystemStorage.multipart_create <vmregistry.storage.filesystem.FilesystemStorage.multipart_create>`
with ``size``); other uploads keep a file per part, joined at completion.
In the upload's directory ``<root>/.multipart/<upload id>/``::

    key             the key the object will have (every upload has it)
    size            the object's declared size: its presence makes the upload in place
    data            the object, truncated to that size: what no part wrote yet is a hole
    parts/<NNNNN>   one record per stored part: {"offset", "size", "etag", "zero"}

Why it is safe with many processes and in any order: a part writes only its
own byte range, at its offset (``pwrite`` semantics through its own file
handle), then makes that range durable (``fdatasync``) and only then writes
its record, atomically (a temporary name renamed into place). So a record
always describes bytes that are on disk, and a part that failed midway has no
record: it was never stored. Blocks are reserved (``posix_fallocate``) before
a part's bytes arrive, so a full disk fails the part at once, not gigabytes
later. A zero part writes no bytes: its range is a hole (punched, if an
earlier write left bytes there).

The object's SHA-256 is computed as parts land, in order: after storing a
part, the request takes the upload's hash lock (if nobody holds it) and hashes
whatever now follows the hashed prefix (``hash``: the offset reached, the
next part number, a digest chained over the etags of the parts hashed, and the
saved hash state, :mod:`vmregistry.storage.resumable`), zero parts from memory. So completion
usually hashes little or nothing: it checks that the parts' records tile
``[0, size)`` in number order, finishes the hash (or, if a part changed after
it was hashed or the state is unusable, hashes the whole file, holes fed from
memory: :func:`vmregistry.extents.hash_file`), fsyncs the file and hands it
to the caller to rename: no second copy of the data. The directory, record
files and the data file together are one upload: aborting it, completing it
or the upload sweep removes the directory whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from vmregistry.extents import BLOCK, hash_file, read_buffer
from vmregistry.storage import resumable
from vmregistry.storage.base import MAX_PART_SIZE, MAX_ZERO_PART_SIZE, Readable, UploadedPart
from vmregistry.storage.pump import copy_into

__all__ = ["complete", "create", "declared_size", "list_parts", "put_bytes", "receive", "zero"]

_SIZE, _DATA, _PARTS, _HASH, _LOCK = "size", "data", "parts", "hash", "hash.lock"
_ZEROS = bytearray(BLOCK)
"""Zeros for the hash of zero parts (writable: ctypes passes it without a copy); never written to."""


def create(directory: Path, size: int) -> None:
    """Lay out an in-place upload of ``size`` bytes in an existing upload directory."""
    if size < 0:
        raise ValueError("an object's size is not negative")
    (directory / _PARTS).mkdir()
    with open(directory / _DATA, "xb") as handle:
        handle.truncate(size)
    (directory / _SIZE).write_text(str(size))


def declared_size(directory: Path) -> int | None:
    """The size of an in-place upload; ``None`` for an upload with a file per part."""
    try:
        return int((directory / _SIZE).read_text())
    except FileNotFoundError:
        return None


def _check_range(directory: Path, offset: int | None, length: int | None) -> int:
    size = declared_size(directory)
    assert size is not None
    if offset is None:
        raise ValueError("a part of an upload written in place needs its offset")
    if offset < 0 or offset > size or (length is not None and offset + length > size):
        raise ValueError(f"a part at {offset} of {length} bytes does not fit in the object's {size} bytes")
    return size


def _record(directory: Path, number: int, offset: int, size: int, zero: bool) -> UploadedPart:
    etag = f"{size:x}-{secrets.token_hex(8)}"
    final = directory / _PARTS / f"{number:05d}"
    temporary = final.with_name(f"{final.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_text(json.dumps({"offset": offset, "size": size, "etag": etag, "zero": zero}))
    os.replace(temporary, final)
    # Hash what now follows the hashed prefix, before answering: a client completes the upload only after
    # every part was answered, so no hashing ever races with the completion (or an abort) of the upload.
    advance(directory)
    return UploadedPart(number, size, etag)


class _Bounded:
    """A body of unknown length (chunked) that may not run past the part's room in the object."""

    def __init__(self, source: Readable, room: int) -> None:
        self._source = source
        self._room = room

    def readinto(self, buffer: memoryview, /) -> int | None:
        n = self._source.readinto(buffer)
        self._room -= n or 0
        if self._room < 0:
            raise ValueError("the part runs past the object's declared size")
        return n


def _write(
    directory: Path, number: int, offset: int, length: int | None, fill: Callable[[BinaryIO], int]
) -> UploadedPart:
    with open(directory / _DATA, "r+b") as handle:
        if length:
            os.posix_fallocate(handle.fileno(), offset, length)
        handle.seek(offset)
        written = fill(handle)
        handle.flush()
        os.fdatasync(handle.fileno())
    return _record(directory, number, offset, written, zero=False)


def receive(directory: Path, number: int, offset: int | None, source: Readable, length: int | None) -> UploadedPart:
    """Stream one part (``length`` bytes, or to the end of a chunked body) to its offset."""
    size = _check_range(directory, offset, length)
    assert offset is not None
    if length is None:
        source = _Bounded(source, min(size - offset, MAX_PART_SIZE))
    return _write(directory, number, offset, length, lambda handle: copy_into(source, handle, length))


def put_bytes(directory: Path, number: int, offset: int | None, data: bytes | bytearray | Path) -> UploadedPart:
    """Store a part held in memory, or copy one staged in a file (``copy_file_range``: in the kernel)."""
    length = data.stat().st_size if isinstance(data, Path) else len(data)
    _check_range(directory, offset, length)
    assert offset is not None

    def fill(handle: BinaryIO) -> int:
        if not isinstance(data, Path):
            return handle.write(data)
        handle.flush()
        with open(data, "rb") as staged:
            copied = 0
            while copied < length:
                n = os.copy_file_range(staged.fileno(), handle.fileno(), length - copied, copied, offset + copied)
                if n <= 0:
                    raise EOFError(f"the staged part ended at {copied} of {length} bytes")
                copied += n
        return copied

    return _write(directory, number, offset, length, fill)


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


_PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01


def _holds_data(fd: int, offset: int, length: int) -> bool:
    try:
        return os.lseek(fd, offset, os.SEEK_DATA) < offset + length
    except OSError as exc:
        return exc.errno != errno.ENXIO  # ENXIO: nothing but a hole from offset on


def _make_hole(fd: int, offset: int, length: int) -> None:
    """Make ``[offset, offset + length)`` read as zeros (durably): punch a hole, or write zeros."""
    if not _holds_data(fd, offset, length):
        return  # already a hole, as every range of a fresh upload is: nothing to write, nothing to sync
    punch = _fallocate()
    if punch is None or punch(fd, _PUNCH_HOLE_KEEP_SIZE, offset, length) != 0:
        zeros = memoryview(_ZEROS)
        for start in range(offset, offset + length, BLOCK):
            os.pwrite(fd, zeros[: min(BLOCK, offset + length - start)], start)
    os.fdatasync(fd)


def zero(directory: Path, number: int, offset: int | None, size: int) -> UploadedPart:
    """Record a part of ``size`` zero bytes at ``offset``: a hole, no bytes written."""
    if not 1 <= size <= MAX_ZERO_PART_SIZE:
        raise ValueError(f"a zero part has 1 to {MAX_ZERO_PART_SIZE} bytes")
    _check_range(directory, offset, size)
    assert offset is not None
    fd = os.open(directory / _DATA, os.O_RDWR)
    try:
        _make_hole(fd, offset, size)
    finally:
        os.close(fd)
    return _record(directory, number, offset, size, zero=True)


def _records(directory: Path) -> dict[int, dict[str, object]]:
    records: dict[int, dict[str, object]] = {}
    for entry in os.scandir(directory / _PARTS):
        if len(entry.name) == 5 and entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ValueError):
                records[int(entry.name)] = json.loads(Path(entry.path).read_text())
    return records


def list_parts(directory: Path) -> list[UploadedPart]:
    return [
        UploadedPart(number, int(str(record["size"])), str(record["etag"]))
        for number, record in sorted(_records(directory).items())
    ]


# -- the hash of the parts landed in order ---------------------------------------------------


def _state(directory: Path) -> dict[str, object]:
    try:
        return dict(json.loads((directory / _HASH).read_text()))
    except (FileNotFoundError, ValueError):
        return {"offset": 0, "next": 1, "chain": "", "sha256": None}


def _chain(chain: str, number: int, etag: str) -> str:
    """The etags of the parts hashed so far, in one small value: a part sent again changes it."""
    return hashlib.sha256(f"{chain}|{number}:{etag}".encode()).hexdigest()


def _hash_following(directory: Path, state: dict[str, object]) -> bool:
    """Hash the parts that follow the hashed prefix in ``state`` (updated); whether it moved."""
    digest = resumable.ResumableSHA256(str(state["sha256"]) if state["sha256"] else None)
    chain = str(state["chain"])
    offset, number = int(str(state["offset"])), int(str(state["next"]))
    first = number
    zeros = memoryview(_ZEROS)
    fd = os.open(directory / _DATA, os.O_RDONLY)
    try:
        with read_buffer() as view:
            while (record := _next_record(directory, number, offset)) is not None:
                end = offset + int(record["size"])
                while offset < end:
                    n = min(len(view), end - offset)
                    if record["zero"]:
                        digest.update(zeros[:n])
                    elif os.preadv(fd, [view[:n]], offset) == n:
                        digest.update(view[:n])
                    else:
                        raise EOFError(f"the object's file ends before {end}")
                    offset += n
                chain = _chain(chain, number, str(record["etag"]))
                number += 1
    finally:
        os.close(fd)
    state.update(offset=offset, next=number, chain=chain, sha256=digest.save())
    return number != first


def _next_record(directory: Path, number: int, offset: int) -> dict[str, Any] | None:
    """Part ``number``'s record, if it is stored and starts where the hashed prefix ends."""
    try:
        record: dict[str, Any] = json.loads((directory / _PARTS / f"{number:05d}").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if record.get("offset") == offset else None  # elsewhere: completion refuses it


def advance(directory: Path, wait: bool = False) -> dict[str, object] | None:
    """Move the hashed prefix as far as the parts landed allow; its state (``None``: another process is at it)."""
    if not resumable.available():
        return None
    try:
        lock = open(directory / _LOCK, "a")  # noqa: SIM115 - closed below, which releases the lock
    except FileNotFoundError:
        return None  # completed or aborted meanwhile
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return None  # the holder looks again for what follows after it lets go
        try:
            state = _state(directory)
            if _hash_following(directory, state):
                temporary = directory / f"{_HASH}.{secrets.token_hex(4)}.tmp"
                temporary.write_text(json.dumps(state))
                os.replace(temporary, directory / _HASH)
        except (OSError, ValueError, RuntimeError, EOFError, KeyError):
            return None  # gone meanwhile, or a state this library cannot use: completion hashes it all
    if not wait and (directory / _PARTS / f"{int(str(state['next'])):05d}").exists():
        return advance(directory)  # a part landed while the lock was held by us: its sender gave up on it
    return state


def complete(directory: Path, parts: list[UploadedPart]) -> tuple[Path, str, os.stat_result]:
    """Check the layout, hash and fsync the object: (its file, its SHA-256, its stat) for the caller to rename."""
    size = declared_size(directory)
    assert size is not None
    records = _records(directory)
    position = 0
    for part in parts:
        record = records.get(part.number)
        if record is None or record["offset"] != position:
            at = None if record is None else record["offset"]
            raise ValueError(f"part {part.number} is at offset {at}, but the parts before it end at {position}")
        position += part.size
    if position != size:
        raise ValueError(f"the parts hold {position} bytes of the {size} declared")
    path = directory / _DATA
    state = advance(directory, wait=True)
    chain = ""
    for part in parts:
        chain = _chain(chain, part.number, part.etag)
    fd = os.open(path, os.O_RDWR)
    try:
        if state is not None and state["offset"] == size and state["chain"] == chain:
            sha256 = resumable.ResumableSHA256(str(state["sha256"])).hexdigest()
        else:  # hashed out of date (a part sent again) or not at all: the whole file, holes from memory
            sha256 = hash_file(fd, size)
        os.fsync(fd)
        stat = os.fstat(fd)
    finally:
        os.close(fd)
    return path, sha256, stat
