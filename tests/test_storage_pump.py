"""The receive pipeline: same bytes and digest as a plain loop, errors surface, nothing hangs."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from vmregistry.storage.pump import CHUNK, PIPELINE_MIN, ConcatenatedFiles, copy_hashing


class Trickle:
    """A source that hands out at most ``step`` bytes per read, like a socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._stream = io.BytesIO(data)
        self._step = step

    def readinto(self, buffer: memoryview) -> int:
        return self._stream.readinto(buffer[: self._step])


class FailingSink(io.BytesIO):
    def write(self, data: object) -> int:
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, PIPELINE_MIN - 1, PIPELINE_MIN, 3 * PIPELINE_MIN + 12345])
@pytest.mark.parametrize("declared", [True, False])
def test_copies_every_byte_in_order_and_hashes_them(size: int, declared: bool) -> None:
    # GIVEN a body that arrives in uneven pieces
    data = os.urandom(size)
    sink = io.BytesIO()
    # WHEN it is pumped with or without a declared length
    digest, count = copy_hashing(Trickle(data, 300_000), sink, size if declared else None)
    # THEN the sink holds exactly the body, and the digest and count are the body's
    assert sink.getvalue() == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert count == size


@pytest.mark.parametrize("size", [PIPELINE_MIN - 1, 2 * PIPELINE_MIN])
def test_a_short_body_is_an_eof_error(size: int) -> None:
    # GIVEN a body that ends 10 bytes before its declared length
    data = os.urandom(size - 10)
    # WHEN / THEN
    with pytest.raises(EOFError, match="10 bytes early"):
        copy_hashing(Trickle(data, CHUNK), io.BytesIO(), size)
    assert not [t for t in threading.enumerate() if t.name.startswith("pump-")]


def test_a_failing_sink_raises_its_error_and_stops_reading() -> None:
    # GIVEN a sink that cannot be written to
    source = Trickle(os.urandom(4 * PIPELINE_MIN), CHUNK)
    # WHEN / THEN the writer's error reaches the caller, and the pipeline's threads are gone
    with pytest.raises(OSError, match="No space left"):
        copy_hashing(source, FailingSink(), 4 * PIPELINE_MIN)
    assert not [t for t in threading.enumerate() if t.name.startswith("pump-")]


def test_concatenated_files_read_as_one_stream(tmp_path: Path) -> None:
    # GIVEN three part files, one of them empty
    parts = [os.urandom(PIPELINE_MIN + 7), b"", os.urandom(CHUNK // 3)]
    paths = []
    for i, data in enumerate(parts):
        paths.append(tmp_path / f"{i:05d}")
        paths[-1].write_bytes(data)
    sink = io.BytesIO()
    # WHEN they are pumped as one stream of unknown length
    with ConcatenatedFiles(paths) as source:
        digest, count = copy_hashing(source, sink, None)
    # THEN the result is their concatenation
    joined = b"".join(parts)
    assert sink.getvalue() == joined
    assert (digest, count) == (hashlib.sha256(joined).hexdigest(), len(joined))
