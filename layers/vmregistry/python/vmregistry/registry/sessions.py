"""The state of one upload session and what operations on it return: records, no storage.

:class:`Session` is what ``uploads/<uuid>/session.json`` holds; :class:`UploadStatus`
and :class:`PartResult` are what :class:`~vmregistry.registry.uploads.Uploads`
answers with, and the handlers turn into the wire format (:mod:`vmregistry.wire`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from vmregistry.digests import Digest, split
from vmregistry.errors import RegistryError
from vmregistry.storage import MAX_PARTS, ObjectNotFound, PresignedRequest, UploadedPart
from vmregistry.wire import MAX_PARTS_PER_REQUEST

__all__ = [
    "PartResult",
    "Session",
    "UploadStatus",
    "UploadVerifier",
    "digest_parts",
    "known",
    "mismatch",
    "parse_part_spec",
    "parse_placed_parts",
]

UploadVerifier = Callable[[dict[str, str]], None]
"""Hands a verification job (repository, uuid, digest) to something that outlives the request."""

_PART_SPEC = re.compile(r"([1-9][0-9]{0,4})(?:-([1-9][0-9]{0,4}))?")
_PLACED_PART = re.compile(r"([1-9][0-9]{0,4}):(0|[1-9][0-9]{0,15})")


@dataclass(slots=True)
class Session:
    uuid: str
    repository: str
    created: float
    mode: Literal["single", "multipart"]
    digest: str | None = None
    size: int | None = None
    multipart_id: str | None = None
    state: Literal["open", "verifying", "failed"] = "open"
    """``verifying``: joined, the whole object is being hashed; ``failed``: it did not match ``digest``."""
    error: dict[str, Any] | None = None
    """Why verification failed (the error a synchronous completion would have answered)."""
    part_size: int | None = None
    """Declared at the start (``partSize``, with ``size``): parts land at their offsets, part N by default
    at ``(N - 1) * part_size`` (storage may write them in place)."""
    appends: bool = False
    """An OCI (``/v2``) session: its bytes arrive as chunks appended in order (:mod:`.appends`), not as parts."""

    def place(self, number: int, offset: int | None) -> int | None:
        """Where part ``number`` lands: the offset named, or its place in the grid (placed sessions only)."""
        if self.part_size is None:
            return None
        return offset if offset is not None else (number - 1) * self.part_size


@dataclass(frozen=True, slots=True)
class PartResult:
    """A part stored inline (its size and etag), or where to send it (``request``)."""

    number: int
    size: int | None = None
    etag: str | None = None
    request: PresignedRequest | None = None


@dataclass(frozen=True, slots=True)
class UploadStatus:
    session: Session
    parts: list[UploadedPart] = field(default_factory=list)
    request: PresignedRequest | None = None

    @property
    def uploaded(self) -> int:
        return sum(p.size for p in self.parts)


def digest_parts(digest: str) -> Digest:
    parsed = split(digest)
    if parsed is None:  # parsed by names.parse_digest before it got here
        raise ValueError(f"not a digest: {digest!r}")
    return parsed


def parse_part_spec(spec: str) -> list[int]:
    """``"3"`` or ``"1-8"`` -> part numbers, within S3's limits."""
    found = _PART_SPEC.fullmatch(spec)
    if found is None:
        raise RegistryError("BLOB_UPLOAD_INVALID", "part is a number N or a range N-M", {"part": spec[:50]})
    first = int(found.group(1))
    last = int(found.group(2) or first)
    if not 1 <= first <= last <= MAX_PARTS:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"parts are numbered 1 to {MAX_PARTS}", {"part": spec})
    if last - first + 1 > MAX_PARTS_PER_REQUEST:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"at most {MAX_PARTS_PER_REQUEST} parts per request", {"part": spec})
    return list(range(first, last + 1))


def parse_placed_parts(spec: str) -> list[tuple[int, int | None]]:
    """``"3"``, ``"1-8"`` (offsets from the session) or ``"3:1048576,4:7340032"`` (each at its offset)."""
    if ":" not in spec:
        return [(number, None) for number in parse_part_spec(spec)]
    items = spec.split(",")
    if len(items) > MAX_PARTS_PER_REQUEST:
        raise RegistryError("BLOB_UPLOAD_INVALID", f"at most {MAX_PARTS_PER_REQUEST} parts per request")
    placed: list[tuple[int, int | None]] = []
    for item in items:
        found = _PLACED_PART.fullmatch(item)
        if found is None or int(found.group(1)) > MAX_PARTS:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID", "a part is N, N-M, or N:OFFSET (comma-separated)", {"part": item[:50]}
            )
        placed.append((int(found.group(1)), int(found.group(2))))
    return placed


@contextlib.contextmanager
def known(upload_id: str) -> Iterator[None]:
    """Storage that lost the upload (completed, cancelled, swept meanwhile) means the client's session is gone."""
    try:
        yield
    except ObjectNotFound:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from None


def mismatch(expected: str, actual: str | None) -> RegistryError:
    return RegistryError(
        "DIGEST_INVALID",
        "the uploaded bytes do not hash to the digest; the upload was discarded",
        {"expected": expected, "actual": actual},
    )
