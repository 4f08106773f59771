"""OCI upload sessions: chunks of any size appended in order, joined into storage's multipart parts.

The OCI protocol (``/v2``) sends a blob as one streamed ``PATCH``, as chunks
with ``Content-Range: <start>-<end>`` that must arrive in order, or in the
closing ``PUT``; a chunk may be a kilobyte. Storage's multipart uploads (the
session's ``multipart_id``, as in ``/v1``) want parts of at least 5 MiB
(:data:`~vmregistry.storage.MIN_PART_SIZE`) but the last. So a session holds:

* **parts** 1..k, joined chunks, each at least 5 MiB;
* **chunks** not yet joined, each an object ``uploads/<uuid>/chunks/<offset>.<length>``
  (:mod:`vmregistry.paths`), together less than 5 MiB, at most :data:`MAX_WAITING`
  of them (tinier ones are merged, so no request lists thousands).

A chunk that brings the waiting bytes to 5 MiB is joined with them into part
k+1, and they are deleted. A body the local server staged in storage (any
size, :class:`~vmregistry.registry.body.Body`) becomes a chunk or a part by a
move when nothing waits and it fits one; otherwise it is copied into parts of
:data:`SEGMENT` bytes, read as a stream, so memory stays bounded. What storage holds is the truth: the upload has
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
from vmregistry.oci.chunks import ChunkRange, check_chunk
from vmregistry.registry.blobs import STREAM_READ, BlobInfo
from vmregistry.registry.body import EMPTY, Body
from vmregistry.registry.sessions import Session, known
from vmregistry.registry.uploads import Uploads
from vmregistry.storage import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, UploadedPart

__all__ = ["MAX_WAITING", "SEGMENT", "Appends", "Progress"]

MAX_WAITING = 64
"""Chunks kept waiting at once: each request lists them, so tiny chunks are merged into one past this."""

SEGMENT = 8 * 1024 * 1024
"""Part size when a staged body is copied into parts, so one request holds that and one read in
memory; larger when the body is so big that 8 MiB parts would exceed storage's 10,000."""


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

    def progress(self, repository: str, upload_id: str, *, tidy: bool = True) -> Progress:
        """The session and what it holds (see the module docstring); BLOB_UPLOAD_UNKNOWN if there is none.

        ``tidy``: also delete stale chunks (leftovers of a request that died). A status
        check does not: its function may only read (least privilege), and stale chunks
        never count towards the progress anyway.
        """
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
        if stale and tidy:
            self.storage.delete_many(stale)
        return progress

    def admit(self, repository: str, upload_id: str, content_range: str | None, content_length: int | None) -> Progress:
        """What a body's sender should learn before sending it: the session takes it, and where it must start."""
        progress = self.progress(repository, upload_id)
        self._check(progress, content_range, content_length, content_length or 0)
        return progress

    def append(
        self, repository: str, upload_id: str, body: Body, content_range: str | None, content_length: int | None
    ) -> Progress:
        """Add a chunk (``content_range`` given) or a streamed body (none) at the end of the upload."""
        progress = self.progress(repository, upload_id)
        self._append(progress, body, content_range, content_length)
        return progress

    def _check(
        self, progress: Progress, content_range: str | None, content_length: int | None, size: int
    ) -> ChunkRange | None:
        try:
            chunk = check_chunk(content_range, progress.received, content_length)
        except RegistryError as error:
            # The answer says where the upload stands, so the client can resume from there.
            error.detail = {**(error.detail or {}), "received": progress.received}
            raise
        if self.limit and progress.received + size > self.limit:
            raise RegistryError(
                "TOO_LARGE",
                f"a blob pushed through /v2 here is at most {self.limit} bytes (it is verified within the"
                " closing request); push larger blobs with `vmregistry push`, which any size takes",
                {"limit": self.limit, "size": progress.received + size},
            )
        return chunk

    def _append(self, progress: Progress, body: Body, content_range: str | None, content_length: int | None) -> None:
        chunk = self._check(progress, content_range, content_length, body.size)
        if chunk is not None and chunk.length != body.size:
            raise RegistryError(
                "RANGE_INVALID",
                f"Content-Range spans {chunk.length} bytes, the body has {body.size}",
                {"range": chunk.length, "body": body.size, "received": progress.received},
            )
        if not body:
            return
        if body.data is not None and progress.waiting + body.size < MIN_PART_SIZE:
            self._wait(progress, body.data)
        elif body.data is not None:
            self._join(progress, body.data)
        elif not progress.chunks and body.size < MIN_PART_SIZE:
            key = paths.upload_chunk_key(progress.session.uuid, progress.received, body.size)
            self.storage.move(body.key or "", key)
            progress.chunks.append(_Chunk(key, progress.received, body.size))
        elif not progress.chunks and body.size <= MAX_PART_SIZE:
            self._part(progress, body)
        else:
            self._copy(progress, body)

    def _wait(self, progress: Progress, data: bytes) -> None:
        """Keep ``data`` as a chunk waiting to be joined (merging the waiting ones past :data:`MAX_WAITING`)."""
        if len(progress.chunks) >= MAX_WAITING:
            # A client sending tiny chunks must not make every request list thousands of them:
            # one object of what waits (under 5 MiB) replaces them.
            merged = self._waiting(progress)
            stale = [chunk.key for chunk in progress.chunks]
            first = progress.chunks[0].offset
            key = paths.upload_chunk_key(progress.session.uuid, first, len(merged))
            self.storage.write(key, merged)
            self.storage.delete_many([old for old in stale if old != key])
            progress.chunks[:] = [_Chunk(key, first, len(merged))]
        key = paths.upload_chunk_key(progress.session.uuid, progress.received, len(data))
        self.storage.write(key, data)
        progress.chunks.append(_Chunk(key, progress.received, len(data)))

    def _part(self, progress: Progress, body: Body) -> None:
        """A staged body becomes the next part as it is (a rename on the filesystem)."""
        session = progress.session
        assert session.multipart_id is not None
        with known(session.uuid):
            part = self.storage.multipart_move_part(
                paths.upload_data_key(session.uuid), session.multipart_id, len(progress.parts) + 1, body.key or ""
            )
        progress.parts.append(part)

    def _copy(self, progress: Progress, body: Body) -> None:
        """Join what waits and a staged body into parts of :data:`SEGMENT` bytes (or more), read as a stream.

        One buffer of a segment is filled, read after read, and handed to storage as it is, part
        after part: a body of any size costs the server one segment and one read.
        """
        pending = self._waiting(progress)
        consumed = [chunk.key for chunk in progress.chunks]
        parts_left = max(MAX_PARTS - len(progress.parts) - 1, 1)
        segment = max(SEGMENT, -(-(len(pending) + body.size) // parts_left))
        buffer = bytearray(segment)
        filled = len(pending)
        buffer[:filled] = pending  # what waits is under 5 MiB, less than a segment
        del pending
        stream = self.storage.open(body.key or "")
        try:
            while block := stream.read(min(STREAM_READ, segment - filled)):
                buffer[filled : filled + len(block)] = block
                filled += len(block)
                if filled == segment:
                    self._put(progress, buffer)
                    filled = 0
                    if consumed:
                        self.storage.delete_many(consumed)
                        consumed = []
        finally:
            stream.close()
        progress.chunks.clear()
        del buffer[filled:]
        if filled >= MIN_PART_SIZE:
            self._put(progress, buffer)
        elif filled:
            self._wait(progress, bytes(buffer))
        if consumed:
            self.storage.delete_many(consumed)

    def _put(self, progress: Progress, data: bytes | bytearray) -> None:
        session = progress.session
        assert session.multipart_id is not None
        with known(session.uuid):
            part = self.storage.multipart_put_part(
                paths.upload_data_key(session.uuid), session.multipart_id, len(progress.parts) + 1, data
            )
        progress.parts.append(part)

    def _waiting(self, progress: Progress, tail: bytes = b"") -> bytes:
        """The chunks waiting to be joined, in order, then ``tail``, as one ``bytes``."""
        return b"".join([*(self.storage.read(chunk.key) for chunk in progress.chunks), tail])

    def _join(self, progress: Progress, tail: bytes = b"") -> None:
        """Join the waiting chunks (and ``tail``) into the next part."""
        data = self._waiting(progress, tail)
        if not data:
            return
        self._put(progress, data)
        if progress.chunks:
            self.storage.delete_many([chunk.key for chunk in progress.chunks])
        progress.chunks.clear()

    def finish(
        self,
        repository: str,
        upload_id: str,
        digest: str,
        body: Body = EMPTY,
        content_range: str | None = None,
        content_length: int | None = None,
    ) -> BlobInfo:
        """The closing PUT: append its body, if any, join what waits as the last part, verify, publish."""
        progress = self.progress(repository, upload_id)
        if body or content_range:
            self._append(progress, body, content_range, content_length)
        self._join(progress)
        result = self.uploads.complete(repository, upload_id, digest, appends=True)
        assert isinstance(result, BlobInfo)  # an OCI session is always verified within the request
        return result

    def cancel(self, repository: str, upload_id: str) -> None:
        self.uploads.cancel(repository, upload_id, appends=True)
