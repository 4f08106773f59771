"""A digest that follows a download: chunks hashed in order as they land, zeros between them hashed from memory.

A pull fetches chunks in parallel and out of order (:mod:`._pull`); verifying
the file only after the last one arrived would read it all again and make the
user wait for the hash. :class:`FollowingDigest` runs on its own thread: as
soon as the chunk after what it hashed so far is on disk, it reads that chunk
back (from the page cache, just written) and hashes it; the ranges between
chunks (the zeros a sparse image leaves out, :mod:`vmregistry.extents`) and
after the last are hashed from a zero buffer, never read. When the download
ends, :meth:`FollowingDigest.result` hashes what is left, if anything.
"""

from __future__ import annotations

import threading

from vmregistry.digests import hasher
from vmregistry.extents import hash_range, read_buffer, update_with_zeros

__all__ = ["FollowingDigest"]


class FollowingDigest:
    """The SHA-256 of a file of ``size`` bytes whose ``chunks`` (sorted ranges) are being written."""

    def __init__(self, fd: int, size: int, chunks: list[tuple[int, int]], done: set[int]) -> None:
        self._fd = fd
        self._size = size
        self._chunks = chunks
        self._done = set(done)
        self._next = 0
        self._position = 0
        self._digest = hasher("sha256")
        self._ready = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pull-hash", daemon=True)
        self._thread.start()

    def landed(self, index: int) -> None:
        """Chunk ``index`` is written."""
        with self._ready:
            self._done.add(index)
            self._ready.notify()

    def _run(self) -> None:
        try:
            with read_buffer() as buffer:
                while True:
                    with self._ready:
                        self._ready.wait_for(lambda: self._next in self._done or self._closing)
                        if self._next not in self._done:
                            return
                    start, end = self._chunks[self._next]
                    update_with_zeros(self._digest, start - self._position)
                    hash_range(self._digest, self._fd, start, end, buffer)
                    self._position = end
                    self._next += 1
        except BaseException as exc:  # handed to result()
            self._error = exc

    def result(self) -> str:
        """``sha256:<hex>`` of the whole file, once every chunk has landed."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._next != len(self._chunks):
            raise RuntimeError(f"chunk {self._next} of {len(self._chunks)} never landed")
        update_with_zeros(self._digest, self._size - self._position)
        return f"sha256:{self._digest.hexdigest()}"

    def abandon(self) -> None:
        """Stop following (the download failed); the thread ends."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join()
