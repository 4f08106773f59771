"""Upload sessions: how big blobs reach storage without passing through the API.

A session is ``uploads/<uuid>/session.json`` and runs in one of two modes:

* ``single``: the client declared ``digest`` and ``size`` (at most 5 GiB); it
  gets one presigned PUT of the blob's final key that binds the SHA-256, so
  the data plane itself refuses a body with another digest, and that carries
  the session id as a marker, so completion links only bytes this session sent.
* ``multipart``: parts numbered 1..10000 (each at least 5 MiB but the last),
  sent inline (small) or to presigned part URLs, in any order and in parallel;
  what storage holds is the truth a resuming client reads back. A session
  started with ``partSize`` (and ``size``) places each part at its offset
  (``(N - 1) * partSize``, or the one the client names), so storage may write
  parts in place; parts declared zero are filled by storage, not sent
  (:mod:`.zeros`).

Multipart bytes land under ``uploads/<uuid>/data`` first: completion verifies
the SHA-256 of the whole, then moves the data under ``blobs/sha256/<hex>``.
Either way a blob is linked into the repository only after that: it is never
visible under a digest it does not have, and a client can only link a blob it
has uploaded (or mounted from a repository it may pull).

A part, a final chunk or a monolithic blob may also come in the request body,
as a :class:`~vmregistry.registry.body.Body`: bytes in memory in AWS, an
object staged in storage by the local server (any size; it becomes the part,
or the blob, by a move).

:meth:`Uploads.sweep` discards what nobody will finish: sessions older than a
day, and the leftovers of requests that died (keys under ``uploads/`` without
a session, multipart uploads whose session is gone, the backend's temporary
files) once they have not changed for longer than a live request could leave
them untouched.

This module starts sessions and takes their parts; :mod:`.session_store` keeps
them and :mod:`.completion` joins, verifies and publishes what they uploaded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from vmregistry import paths
from vmregistry.errors import RegistryError
from vmregistry.registry import zeros
from vmregistry.registry.blobs import BlobInfo
from vmregistry.registry.body import EMPTY, Body
from vmregistry.registry.completion import Completion
from vmregistry.registry.sessions import PartResult, Session, UploadStatus, UploadVerifier, known, parse_placed_parts
from vmregistry.storage import MAX_PART_SIZE, MAX_SINGLE_PUT_SIZE, MIN_PART_SIZE

if TYPE_CHECKING:
    from vmregistry.registry.sweep import SweepReport

__all__ = ["PartResult", "Session", "UploadStatus", "UploadVerifier", "Uploads"]


class Uploads(Completion):
    """Start sessions and take their parts; completion and bookkeeping are inherited."""

    def start(
        self,
        repository: str,
        *,
        digest: str | None = None,
        size: int | None = None,
        mode: str | None = None,
        part_size: int | None = None,
        body: Body = EMPTY,
        mount: str | None = None,
        mount_from: str | None = None,
        may_pull: Callable[[str], bool] = lambda _: False,
        may_pull_anything: bool = False,
        appends: bool = False,
    ) -> BlobInfo | UploadStatus:
        """Mount, upload monolithically, or open a session (whichever the request asks for).

        A mount without ``mount_from`` (OCI's anonymous mount) links any stored blob
        only for a caller who may pull every repository (``may_pull_anything``):
        anyone else would learn of, and gain, blobs of repositories they cannot read.
        ``appends`` opens an OCI session (:mod:`.appends`).
        """
        if mount is not None and mount_from is not None and may_pull(mount_from):
            source = self.blobs.find(mount_from, mount)
            if source is not None:
                return self.blobs.link(repository, mount, source.size)
        elif mount is not None and mount_from is None and may_pull_anything:
            stored = self.storage.stat(paths.blob_key(mount))
            if stored is not None:
                return self.blobs.link(repository, mount, stored.size)
        # OCI: a mount that cannot be honoured falls back to a fresh upload session.
        if body:
            if digest is None:
                raise RegistryError("DIGEST_INVALID", "a monolithic upload needs ?digest=")
            return self.blobs.put(repository, digest, body)
        if mode not in (None, "single", "multipart"):
            raise RegistryError("BLOB_UPLOAD_INVALID", "mode is 'single' or 'multipart'", {"mode": mode})
        if size is not None and size < 0:
            raise RegistryError("SIZE_INVALID", detail={"size": size})
        if mode == "single" and (digest is None or size is None):
            raise RegistryError("BLOB_UPLOAD_INVALID", "a single-PUT upload needs ?digest= and ?size=")
        if mode == "single" and size is not None and size > MAX_SINGLE_PUT_SIZE:
            raise RegistryError(
                "SIZE_INVALID", f"single PUTs are limited to {MAX_SINGLE_PUT_SIZE} bytes; use multipart"
            )
        if part_size is not None and (size is None or mode == "single" or appends):
            raise RegistryError("BLOB_UPLOAD_INVALID", "partSize places multipart parts: it needs ?size=")
        if part_size is not None and not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise RegistryError("SIZE_INVALID", f"partSize is {MIN_PART_SIZE} to {MAX_PART_SIZE} bytes")
        session = Session(
            str(uuid.uuid4()), repository, time.time(), "multipart", digest, size, appends=appends, part_size=part_size
        )
        single_possible = (
            not appends
            and part_size is None
            and digest is not None
            and size is not None
            and size <= MAX_SINGLE_PUT_SIZE
        )
        if mode != "multipart" and single_possible:
            session.mode = "single"
            request = self._presign_single(session)
            if request is not None:
                self._save(session)
                return UploadStatus(session, request=request)
            if mode == "single":
                raise RegistryError("UNSUPPORTED", "this storage backend cannot presign uploads; use multipart")
            session.mode = "multipart"
        session.multipart_id = self.storage.multipart_create(
            paths.upload_data_key(session.uuid), size if part_size is not None else None
        )
        self._save(session)
        return UploadStatus(session)

    def writable(self, repository: str, upload_id: str) -> Session:
        """The session, if it takes parts now (what a chunk's sender should learn before sending it)."""
        session = self.load(repository, upload_id)
        self._multipart(session)
        self._open(session)
        return session

    def put_parts(
        self, repository: str, upload_id: str, spec: str | None, body: Body = EMPTY, zero: str | None = None
    ) -> list[PartResult]:
        """Store an inline part, hand out presigned URLs for the parts in ``spec``, or have storage fill zero parts."""
        session = self.load(repository, upload_id)
        multipart_id = self._multipart(session)
        with known(upload_id):
            key = paths.upload_data_key(upload_id)
            if zero is not None:
                if body or spec is not None:
                    raise RegistryError("BLOB_UPLOAD_INVALID", "zero parts come alone: no body, no ?part=")
                items = zeros.parse_zero_spec(zero)
                filled = zeros.fill(self.storage, key, multipart_id, upload_id, items, session.part_size is not None)
                return [PartResult(p.number, p.size, p.etag) for p in filled]
            if body:
                placed = parse_placed_parts(spec) if spec is not None else [(None, None)]
                if len(placed) != 1:
                    raise RegistryError("BLOB_UPLOAD_INVALID", "an inline body is exactly one part")
                number, offset = placed[0]
                stored = self._put_part(session, number, body, offset)
                return [PartResult(stored.number, stored.size, stored.etag)]
            if spec is None:
                raise RegistryError("BLOB_UPLOAD_INVALID", "send a part inline, or ask for URLs with ?part=N or N-M")
            results = []
            for number, offset in parse_placed_parts(spec):
                request = self.storage.multipart_presign_part(
                    key,
                    multipart_id,
                    number,
                    self.settings.presign_expires,
                    offset=session.place(number, offset),
                )
                if request is None:
                    raise RegistryError("UNSUPPORTED", "this storage backend cannot presign parts; send parts inline")
                results.append(PartResult(number, request=request))
            return results

    def status(self, repository: str, upload_id: str) -> UploadStatus:
        session = self.load(repository, upload_id)
        if session.mode == "single":
            return UploadStatus(session, request=self._presign_single(session))
        if session.state != "open":  # the multipart upload is already joined: no parts to list
            return UploadStatus(session)
        with known(upload_id):
            parts = self.storage.multipart_list_parts(paths.upload_data_key(upload_id), self._multipart(session))
        return UploadStatus(session, parts)

    def cancel(self, repository: str, upload_id: str, *, appends: bool = False) -> None:
        session = self.load(repository, upload_id, appends=appends)
        self.discard(session)

    def sweep(self, older_than: float, leftovers_older_than: float | None = None) -> SweepReport:
        """Discard sessions started ``older_than`` seconds ago, and leftovers untouched for ``leftovers_older_than``.

        See :mod:`vmregistry.registry.sweep`; leftovers default to ``older_than``.
        """
        from vmregistry.registry.sweep import sweep

        return sweep(self, older_than, older_than if leftovers_older_than is None else leftovers_older_than)
