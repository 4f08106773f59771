"""Chunked uploads on the wire: the ``Content-Range`` a client sends and the ``Range`` a registry answers.

The spec's forms (distribution-spec 1.1, "Pushing a blob in chunks"):

- a chunk: ``PATCH <location>`` with ``Content-Range: <start>-<end>`` (inclusive,
  no ``bytes`` unit) and ``Content-Length: <end - start + 1>``. Chunks arrive in
  order: ``start`` is the number of bytes received so far. A gap or an overlap,
  and a malformed header, answer **416** with the current ``Range`` and ``Location``,
  so the client can resume (the conformance suite then sends ``GET <location>``
  and expects 204 with ``Range: 0-<last byte>``).
- a streamed body: ``PATCH`` without ``Content-Range`` appends the whole body.
- the last chunk may come with the closing ``PUT <location>?digest=...``, with or
  without a ``Content-Range``.
- every 202 (POST, PATCH) and the 204 of a status ``GET`` carry ``Location`` and
  ``Range: 0-<offset - 1>``.

What clients send (seen with the logging proxy, ``conformance.proxy``): the
conformance suite and oras-py (16 MiB chunks by default) send the spec's
``<start>-<end>``; skopeo and podman (containers/image) stream the whole blob in
one ``PATCH`` with a ``Content-Length`` and no ``Content-Range``. The HTTP
response form ``bytes <start>-<end>/<total>`` and the request form
``bytes=<start>-<end>`` are accepted too: the offsets are what matter. Before any byte arrives the
progress is ``Range: 0-0``, as distribution answers (an empty upload has no
inclusive range; clients read the header only after sending data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmregistry.errors import RegistryError

__all__ = [
    "CHUNK_MIN_LENGTH_HEADER",
    "ChunkRange",
    "check_chunk",
    "parse_content_range",
    "progress_headers",
    "progress_range",
]

CHUNK_MIN_LENGTH_HEADER = "OCI-Chunk-Min-Length"

# <start>-<end>, optionally with the unit ("bytes " or "bytes=") and a total ("/<n>" or "/*").
# At most 19 digits: int64, like every Go client's offsets.
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]{1,19}|\*))?")


@dataclass(frozen=True, slots=True)
class ChunkRange:
    start: int
    end: int
    """Inclusive, as in the header."""

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(value: str) -> ChunkRange:
    """A chunk's ``Content-Range``; a malformed one is RANGE_INVALID (416, the spec's answer)."""
    found = _CONTENT_RANGE.fullmatch(value.strip())
    if found is None:
        message = "Content-Range must be <start>-<end> (inclusive byte offsets)"
        raise RegistryError("RANGE_INVALID", message, {"contentRange": value[:100]})
    start, end = int(found.group(1)), int(found.group(2))
    if end < start:
        raise RegistryError("RANGE_INVALID", "Content-Range ends before it starts", {"contentRange": value[:100]})
    return ChunkRange(start, end)


def check_chunk(content_range: str | None, received: int, content_length: int | None) -> ChunkRange | None:
    """Where a chunk goes: ``None`` for a streamed body (append it all), else its checked range.

    ``received`` is what the session holds. The range must start there (416
    otherwise: out of order) and, when the body's length is declared, span
    exactly that many bytes (416 too: the header and the body disagree). A body
    sent chunked (no ``Content-Length``) is checked against the range by the
    caller once read, before the bytes join the upload.
    """
    if content_range is None or not content_range.strip():
        return None
    chunk = parse_content_range(content_range)
    if chunk.start != received:
        raise RegistryError(
            "RANGE_INVALID",
            f"chunks must arrive in order: this one starts at {chunk.start}, the upload holds {received} bytes",
            {"start": chunk.start, "received": received},
        )
    if content_length is not None and content_length != chunk.length:
        raise RegistryError(
            "RANGE_INVALID",
            f"Content-Range spans {chunk.length} bytes, the body has {content_length}",
            {"range": chunk.length, "contentLength": content_length},
        )
    return chunk


def progress_range(received: int) -> str:
    """The ``Range`` header of an upload holding ``received`` bytes: ``0-<received - 1>`` (``0-0`` when empty)."""
    if received < 0:
        raise ValueError("received must be non-negative")
    return f"0-{max(received - 1, 0)}"


def progress_headers(location: str, upload_id: str, received: int) -> dict[str, str]:
    """What every 202/204/416 of an upload session carries."""
    return {
        "Location": location,
        "Range": progress_range(received),
        "Docker-Upload-UUID": upload_id,
        "Content-Length": "0",
    }
