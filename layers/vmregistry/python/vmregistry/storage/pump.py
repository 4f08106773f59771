"""Copy a stream into a file while hashing it, with reading, hashing and writing overlapped.

Why threads: receiving a blob costs three steps of about the same size per
chunk (a socket ``readinto``, a SHA-256 update, a ``write`` into the page
cache), and each of them releases the GIL for a large buffer (hashlib does
above 2 KiB). Done one after the other, a chunk costs the sum of the three;
as a three-stage pipeline (the caller reads, one thread hashes, one writes)
it costs about the slowest one, on any machine with a second core.

The writer also asks the kernel to start writing each finished 16 MiB window
to disk (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, Linux, through ctypes:
Python has no binding), so the disk works while the body is still arriving and
the caller's final fsync waits for the last window instead of the whole file.
It changes nothing about durability: only the fsync after the copy makes the
file durable, and nothing is visible before the caller renames it.

:func:`copy_into` is the same pipeline without the hasher: a multipart part
written in place (:mod:`vmregistry.storage.inplace`) is verified with the
whole object, not on its own.

Memory stays constant: :data:`DEPTH` buffers of :data:`CHUNK` bytes circulate
from the reader to the hasher to the writer and back. The result is the same
as the plain loop's: the file holds exactly the bytes read, in order, and the
digest is theirs; the caller still decides (after fsync) whether the file
becomes visible. Bodies smaller than :data:`PIPELINE_MIN` take the plain loop,
where starting two threads would cost more than it saves.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from typing import BinaryIO

from vmregistry.storage.base import Readable

__all__ = [
    "CHUNK",
    "DEPTH",
    "PIPELINE_MIN",
    "ConcatenatedFiles",
    "Readable",
    "copy_hashing",
    "copy_into",
    "start_writeback",
]

CHUNK = 1024 * 1024
DEPTH = 8
PIPELINE_MIN = 8 * CHUNK


class ConcatenatedFiles:
    """Several files read as one stream (multipart parts being joined), one open at a time."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self._paths = list(paths)
        self._current: io.BufferedReader | None = None

    def readinto(self, buffer: memoryview, /) -> int:
        while True:
            if self._current is None:
                if not self._paths:
                    return 0
                self._current = open(self._paths.pop(0), "rb")  # noqa: SIM115 - closed at its end or in close()
            n = self._current.readinto(buffer)
            if n:
                return n
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def __enter__(self) -> ConcatenatedFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(source: Readable, buffer: memoryview, remaining: int | None) -> int:
    n = source.readinto(buffer if remaining is None or remaining >= len(buffer) else buffer[:remaining])
    if not n:
        if remaining is not None and remaining > 0:
            raise EOFError(f"body ended {remaining} bytes early")
        return 0
    return n


def _plain(source: Readable, sink: BinaryIO, length: int | None, hashing: bool = True) -> tuple[str, int]:
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(CHUNK))
    remaining, total = length, 0
    while remaining is None or remaining > 0:
        n = _read(source, buffer, remaining)
        if not n:
            break
        chunk = buffer[:n]
        if hashing:
            digest.update(chunk)
        sink.write(chunk)
        total += n
        if remaining is not None:
            remaining -= n
    return digest.hexdigest(), total


_Item = tuple[memoryview, int] | None
WRITEBACK_WINDOW = 16 * CHUNK
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _writeback_function() -> Callable[[int, int, int], None] | None:
    """``sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)``, or ``None`` off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, count: int) -> None:
        function(fd, offset, count, _SYNC_FILE_RANGE_WRITE)  # a failure only loses the head start

    return start


def start_writeback(fd: int, offset: int, count: int) -> None:
    """Ask the kernel to start writing ``count`` bytes at ``offset`` to disk now (Linux; elsewhere nothing)."""
    writeback = _writeback_function()
    if writeback is not None:
        writeback(fd, offset, count)


class _Pipeline:
    """The hasher and writer threads; the caller is the reader."""

    def __init__(self, sink: BinaryIO, hashing: bool = True) -> None:
        self.digest = hashlib.sha256()
        self.hashing = hashing
        self.sink = sink
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        self.to_hash: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.to_write: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.error: BaseException | None = None
        for _ in range(DEPTH):
            self.free.put(memoryview(bytearray(CHUNK)))
        self.threads = [
            threading.Thread(target=self._hash, name="pump-hash", daemon=True),
            threading.Thread(target=self._write, name="pump-write", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _hash(self) -> None:
        while (item := self.to_hash.get()) is not None:
            buffer, n = item
            if self.error is None and self.hashing:
                try:
                    self.digest.update(buffer[:n])
                except BaseException as exc:  # handed to the reader, which re-raises it
                    self.error = exc
            self.to_write.put(item)
        self.to_write.put(None)

    def _write(self) -> None:
        writeback = _writeback_function()
        try:
            fd = self.sink.fileno() if writeback is not None else -1
            base = self.sink.tell() if fd >= 0 else 0  # a part written in place starts at its offset
        except (OSError, AttributeError, ValueError):  # not a file (io.BytesIO): nothing to write back
            fd, base = -1, 0
        written = started = 0
        # After a failure, keep returning buffers so the reader never waits forever.
        while (item := self.to_write.get()) is not None:
            buffer, n = item
            if self.error is None:
                try:
                    self.sink.write(buffer[:n])
                    written += n
                    if fd >= 0 and writeback is not None and written - started >= WRITEBACK_WINDOW:
                        self.sink.flush()
                        writeback(fd, base + started, written - started)
                        started = written
                except BaseException as exc:  # handed to the reader, which re-raises it
                    self.error = exc
            self.free.put(buffer)

    def run(self, source: Readable, length: int | None) -> tuple[str, int]:
        remaining, total = length, 0
        try:
            while (remaining is None or remaining > 0) and self.error is None:
                buffer = self.free.get()
                n = _read(source, buffer, remaining)
                if not n:
                    self.free.put(buffer)
                    break
                self.to_hash.put((buffer, n))
                total += n
                if remaining is not None:
                    remaining -= n
        finally:
            self.to_hash.put(None)
            for thread in self.threads:
                thread.join()
        if self.error is not None:
            raise self.error
        return self.digest.hexdigest(), total


def copy_hashing(source: Readable, sink: BinaryIO, length: int | None) -> tuple[str, int]:
    """Copy ``length`` bytes (to the end when ``None``) from ``source`` to ``sink``.

    Returns the SHA-256 hex digest of the bytes and how many there were;
    :class:`EOFError` if ``source`` ends before ``length`` bytes. ``sink`` is
    written to from another thread, and only until this function returns.
    """
    if length is not None and length < PIPELINE_MIN:
        return _plain(source, sink, length)
    return _Pipeline(sink).run(source, length)


def copy_into(source: Readable, sink: BinaryIO, length: int | None) -> int:
    """:func:`copy_hashing` without the hash: how many bytes were copied."""
    if length is not None and length < PIPELINE_MIN:
        return _plain(source, sink, length, hashing=False)[1]
    return _Pipeline(sink, hashing=False).run(source, length)[1]
