"""Request bodies as readers: fixed length, or ``Transfer-Encoding: chunked``.

Both read straight into the caller's buffer (``readinto``), so a multi-GB body
streams through one reused buffer and never lands in memory whole. A body that
is malformed or ends early is a :class:`BodyError` (the client's mistake: 400);
one that exceeds what the reader was told to accept is a :class:`BodyTooLarge`
(413).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BodyError", "BodyTooLarge", "ChunkedReader", "LengthReader", "read_all"]

MAX_CHUNK_LINE = 1024


class Stream(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class BodyError(Exception):
    """The body is malformed or ended early."""


class BodyTooLarge(Exception):
    """The body is longer than the reader accepts."""


class LengthReader:
    def __init__(self, stream: Stream, length: int) -> None:
        self._stream = stream
        self.remaining = length

    @property
    def done(self) -> bool:
        return self.remaining <= 0

    def readinto(self, buffer: memoryview) -> int:
        if self.remaining <= 0:
            return 0
        view = buffer[: min(len(buffer), self.remaining)]
        n = self._stream.readinto(view)
        if not n:
            raise BodyError(f"the body ended {self.remaining} bytes early")
        self.remaining -= n
        return n


class ChunkedReader:
    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._left = 0
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def _next_chunk(self) -> None:
        line = self._stream.readline(MAX_CHUNK_LINE)
        try:
            self._left = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError("malformed chunk size line") from None
        if self._left < 0:
            raise BodyError("negative chunk size")
        if self._left == 0:
            # Trailers, if any, end with an empty line.
            while self._stream.readline(MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                pass
            self._done = True

    def readinto(self, buffer: memoryview) -> int:
        if self._done:
            return 0
        if self._left == 0:
            self._next_chunk()
            if self._done:
                return 0
        n = self._stream.readinto(buffer[: min(len(buffer), self._left)])
        if not n:
            raise BodyError("the chunked body ended early")
        self._left -= n
        if self._left == 0 and self._stream.readline(MAX_CHUNK_LINE) not in (b"\r\n", b"\n"):
            raise BodyError("a chunk is not followed by CRLF")
        return n


def read_all(reader: LengthReader | ChunkedReader, limit: int) -> bytes:
    """The whole body, or :class:`BodyTooLarge` if it is longer than ``limit``."""
    out = bytearray()
    buffer = memoryview(bytearray(min(limit + 1, 1024 * 1024)))
    while n := reader.readinto(buffer):
        out += buffer[:n]
        if len(out) > limit:
            raise BodyTooLarge(f"the body exceeds {limit} bytes")
    return bytes(out)
