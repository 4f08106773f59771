"""OCI upload sessions: chunks of any size appended in order, joined into storage's multipart parts.

The OCI protocol (``/v2``) sends a blob as one streamed ``PATCH``, as chunks
with ``Content-Range: <start>-<end>`` that must arrive in order, or in the
closing ``PUT``; a chunk may be a kilobyte. Storage's multipart uploads (the
session's ``multipart_id``, as in ``/v1``) want parts of at least 5 MiB
(:data:`~vmregistry.storage.MIN_PART_SIZE`) but the last. So a session holds:

* **parts** 1..k, joined chunks, each at least 5 MiB;
* **chunks** not yet joined, each an object ``uploads/<uuid>/chunks/<offset>.<length>``
  (:mod:`vmregistry.paths`), together less than 5 MiB.

A chunk that brings the waiting bytes to 5 MiB is joined with them into part
k+1, and they are deleted. What storage holds is the truth: the upload has
received ``sum(part sizes) + sum(chunk lengths)`` bytes, which is where the
next chunk must start (416 RANGE_INVALID otherwise, with the progress, so the
client can resume). A chunk object that starts before the parts' end is a
leftover of a request that died after writing its part: ignored and deleted.

The closing ``PUT`` joins the last waiting chunks as the last part, completes
the multipart upload and verifies the digest before anything is visible
(:meth:`Uploads.complete <vmregistry.registry.uploads.Uploads.complete>`),
within the request. Two clients appending to one session at once can
interleave their chunks; the final verification refuses what that produces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmregistry import paths
from vmregistry.errors import RegistryError
from vmregistry.oci.chunks import check_chunk
from vmregistry.registry.blobs import BlobInfo
from vmregistry.registry.sessions import Session, known
from vmregistry.registry.uploads import Uploads
from vmregistry.storage import MIN_PART_SIZE, UploadedPart

__all__ = ["Appends", "Progress"]


@dataclass(frozen=True, slots=True)
class _Chunk:
    key: str
    offset: int
    length: int


@dataclass(slots=True)
class Progress:
    """What a session holds: its parts, the chunks waiting to be joined, and the bytes received."""

    session: Session
    parts: list[UploadedPart] = field(default_factory=list)
    chunks: list[_Chunk] = field(default_factory=list)

    @property
    def joined(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def waiting(self) -> int:
        return sum(chunk.length for chunk in self.chunks)

    @property
    def received(self) -> int:
        return self.joined + self.waiting


def _chunk_of(key: str, prefix: str) -> _Chunk | None:
    offset, dot, length = key.removeprefix(prefix).partition(".")
    if not dot or not offset.isdigit() or not length.isdigit():
        return None
    return _Chunk(key, int(offset), int(length))


class Appends:
    def __init__(self, uploads: Uploads) -> None:
        self.uploads = uploads
        self.storage = uploads.storage
        self.limit = uploads.settings.oci_upload_limit

    def progress(self, repository: str, upload_id: str) -> Progress:
        """The session and what it holds (see the module docstring); BLOB_UPLOAD_UNKNOWN if there is none."""
        session = self.uploads.load(repository, upload_id, appends=True)
        if session.state != "open" or session.multipart_id is None:
            raise RegistryError("BLOB_UPLOAD_INVALID", f"this upload is {session.state}", {"state": session.state})
        with known(upload_id):
            parts = self.storage.multipart_list_parts(paths.upload_data_key(upload_id), session.multipart_id)
        progress = Progress(session, parts)
        prefix = paths.upload_chunks_prefix(upload_id)
        stale = []
        for key in self.storage.list(prefix):
            chunk = _chunk_of(key, prefix)
            if chunk is None:
                continue
            if chunk.offset != progress.received:
                stale.append(key)  # joined by a request that died before deleting it, or out of sequence
                continue
            progress.chunks.append(chunk)
        if stale:
            self.storage.delete_many(stale)
        return progress

    def append(
        self, repository: str, upload_id: str, data: bytes, content_range: str | None, content_length: int | None
    ) -> Progress:
        """Add a chunk (``content_range`` given) or a streamed body (none) at the end of the upload."""
        progress = self.progress(repository, upload_id)
        self._append(progress, data, content_range, content_length)
        return progress

    def _append(self, progress: Progress, data: bytes, content_range: str | None, content_length: int | None) -> None:
        try:
            chunk = check_chunk(content_range, progress.received, content_length)
        except RegistryError as error:
            # The answer says where the upload stands, so the client can resume from there.
            error.detail = {**(error.detail or {}), "received": progress.received}
            raise
        if chunk is not None and chunk.length != len(data):
            raise RegistryError(
                "RANGE_INVALID",
                f"Content-Range spans {chunk.length} bytes, the body has {len(data)}",
                {"range": chunk.length, "body": len(data), "received": progress.received},
            )
        if self.limit and progress.received + len(data) > self.limit:
            raise RegistryError(
                "TOO_LARGE",
                f"a blob pushed through /v2 here is at most {self.limit} bytes (it is verified within the"
                " closing request); push larger blobs with `vmregistry push`, which any size takes",
                {"limit": self.limit, "size": progress.received + len(data)},
            )
        if not data:
            return
        upload_id = progress.session.uuid
        if progress.waiting + len(data) < MIN_PART_SIZE:
            key = paths.upload_chunk_key(upload_id, progress.received, len(data))
            self.storage.write(key, data)
            progress.chunks.append(_Chunk(key, progress.received, len(data)))
            return
        self._join(progress, data)

    def _join(self, progress: Progress, tail: bytes = b"") -> None:
        """Join the waiting chunks (and ``tail``) into the next part."""
        session = progress.session
        assert session.multipart_id is not None
        data = b"".join([*(self.storage.read(chunk.key) for chunk in progress.chunks), tail])
        if not data:
            return
        with known(session.uuid):
            part = self.storage.multipart_put_part(
                paths.upload_data_key(session.uuid), session.multipart_id, len(progress.parts) + 1, data
            )
        if progress.chunks:
            self.storage.delete_many([chunk.key for chunk in progress.chunks])
        progress.parts.append(part)
        progress.chunks.clear()

    def finish(
        self,
        repository: str,
        upload_id: str,
        digest: str,
        data: bytes,
        content_range: str | None,
        content_length: int | None,
    ) -> BlobInfo:
        """The closing PUT: append its body, if any, join what waits as the last part, verify, publish."""
        progress = self.progress(repository, upload_id)
        if data or content_range:
            self._append(progress, data, content_range, content_length)
        self._join(progress)
        result = self.uploads.complete(repository, upload_id, digest, appends=True)
        assert isinstance(result, BlobInfo)  # an OCI session is always verified within the request
        return result

    def cancel(self, repository: str, upload_id: str) -> None:
        self.uploads.cancel(repository, upload_id, appends=True)
