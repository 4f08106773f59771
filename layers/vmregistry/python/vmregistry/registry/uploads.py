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
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from vmregistry import paths
from vmregistry.config import Settings
from vmregistry.digests import EMPTY_SHA256, Digest
from vmregistry.errors import RegistryError, error_dict
from vmregistry.extents import Extent
from vmregistry.oci.jsondoc import parse_document
from vmregistry.registry import zeros
from vmregistry.registry.blobs import BlobInfo, Blobs
from vmregistry.registry.body import EMPTY, Body
from vmregistry.registry.sessions import (
    PartResult,
    Session,
    UploadStatus,
    UploadVerifier,
    digest_parts,
    known,
    mismatch,
    parse_placed_parts,
)
from vmregistry.storage import (
    MAX_PART_SIZE,
    MAX_SINGLE_PUT_SIZE,
    MIN_PART_SIZE,
    ObjectInfo,
    ObjectNotFound,
    PresignedRequest,
    Storage,
    UploadedPart,
)

if TYPE_CHECKING:
    from vmregistry.registry.sweep import SweepReport

__all__ = ["PartResult", "Session", "UploadStatus", "UploadVerifier", "Uploads"]


class Uploads:
    def __init__(
        self, storage: Storage, settings: Settings, blobs: Blobs, verifier: UploadVerifier | None = None
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.blobs = blobs
        self.verifier = verifier

    # -- session state ----------------------------------------------------------

    def _save(self, session: Session) -> None:
        self.storage.write(paths.upload_session_key(session.uuid), json.dumps(asdict(session)).encode())

    def load(self, repository: str, upload_id: str, *, appends: bool = False) -> Session:
        """The session, if it exists and belongs to ``repository``; BLOB_UPLOAD_UNKNOWN otherwise.

        ``appends``: the caller speaks the OCI protocol (:mod:`.appends`); a session
        continues only through the API that started it (their parts mean different things).
        """
        try:
            raw = parse_document(self.storage.read(paths.upload_session_key(upload_id)))
            session = Session(**raw)
        except (ObjectNotFound, ValueError, TypeError):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id}) from None
        if session.repository != repository:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id})
        if session.appends != appends:
            api = "/v2" if session.appends else "/v1"
            raise RegistryError("BLOB_UPLOAD_INVALID", f"this upload was started through {api}: continue it there")
        return session

    def _presign_single(self, session: Session) -> PresignedRequest | None:
        assert session.digest is not None
        digest = digest_parts(session.digest)
        if digest.algorithm != "sha256":
            return None  # storage can only bind a SHA-256 to a presigned PUT
        # Straight to the blob's final key: storage refuses a body with another SHA-256, so only
        # the right bytes can land there, and the marker shows this session is the one that sent them.
        return self.storage.presign_put(
            paths.blob_key(session.digest),
            self.settings.presign_expires,
            sha256=digest.hex,
            size=session.size,
            marker=session.uuid,
        )

    # -- operations -------------------------------------------------------------

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

    def _multipart(self, session: Session) -> str:
        if session.mode != "multipart" or session.multipart_id is None:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                "this session uploads with one presigned PUT (see GET on the session); parts need mode=multipart",
            )
        return session.multipart_id

    def _put_part(self, session: Session, number: int | None, body: Body, offset: int | None = None) -> UploadedPart:
        """Store ``body`` as part ``number`` (``None``: the part after the last one stored)."""
        if body.size > MAX_PART_SIZE:
            raise RegistryError(
                "TOO_LARGE",
                f"a part is at most {MAX_PART_SIZE} bytes; send the rest as further parts",
                {"size": body.size, "limit": MAX_PART_SIZE},
            )
        key, multipart_id = paths.upload_data_key(session.uuid), self._multipart(session)
        if number is None:
            existing = self.storage.multipart_list_parts(key, multipart_id)
            number = existing[-1].number + 1 if existing else 1
        offset = session.place(number, offset)
        try:
            if body.data is not None:
                return self.storage.multipart_put_part(key, multipart_id, number, body.data, offset=offset)
            return self.storage.multipart_move_part(key, multipart_id, number, body.key or "", offset=offset)
        except ValueError as exc:  # it does not fit where the session places it
            raise RegistryError("BLOB_UPLOAD_INVALID", str(exc)) from None

    def writable(self, repository: str, upload_id: str) -> Session:
        """The session, if it takes parts now (what a chunk's sender should learn before sending it)."""
        session = self.load(repository, upload_id)
        self._multipart(session)
        self._open(session)
        return session

    @staticmethod
    def _open(session: Session) -> None:
        if session.state != "open":
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                f"this upload is {session.state}; GET the session for its outcome, HEAD the blob to see it published",
                {"state": session.state, "error": session.error},
            )

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

    def complete(
        self, repository: str, upload_id: str, digest: str, body: Body = EMPTY, *, appends: bool = False
    ) -> BlobInfo | UploadStatus:
        """Verify what was uploaded against ``digest`` and publish it.

        A blob too big to hash within one API request (when a verifier is
        configured) is handed to it instead: the answer is the session in state
        ``verifying``, and the blob appears (HEAD turns 200) once it is verified.
        An OCI session (``appends``) is always verified here: its clients expect
        201 from this request (its size is bounded by ``oci_upload_limit`` instead).
        """
        session = self.load(repository, upload_id, appends=appends)
        key = paths.upload_data_key(upload_id)
        if session.digest is not None and session.digest != digest:
            raise RegistryError(
                "DIGEST_INVALID",
                "the digest differs from the one the upload was started with",
                {"started": session.digest, "completed": digest},
            )
        self._open(session)
        if session.mode == "single":
            return self._complete_single(session, digest, body)
        info, actual, holes = self._join(session, key, body)
        if session.size is not None and info.size != session.size:
            self.discard(session)
            raise RegistryError("SIZE_INVALID", detail={"expected": session.size, "actual": info.size})
        wanted = digest_parts(digest)
        if actual is not None and actual != wanted.hex and wanted.algorithm == "sha256":
            actual = None  # a digest computed along the way may refuse nothing: read the bytes back to be sure
        if actual is None or wanted.algorithm != "sha256":
            # The backend could not hash while joining (S3 multipart), or not in this algorithm: read it back.
            session.state, session.digest = "verifying", digest
            self._save(session)
            # Declared zeros are hashed from memory, not fetched: they cost a fraction of stored bytes.
            zero_bytes = sum(hole.length for hole in holes)
            costly = info.size - zero_bytes * 7 // 8 > self.settings.verify_inline_bytes
            if self.verifier is not None and costly and not appends:
                self.verifier({"repository": repository, "uuid": upload_id, "digest": digest})
                return UploadStatus(session)
            actual = zeros.hash_stored(self.storage, key, wanted.algorithm, info.size, holes)
        if actual != wanted.hex:
            self.discard(session)
            raise mismatch(digest, str(Digest(wanted.algorithm, actual)))
        return self._publish(session, digest, info.size)

    def _complete_single(self, session: Session, digest: str, body: Body) -> BlobInfo:
        """The bytes are already under their digest (verified by storage); link them if this session sent them."""
        if body:
            raise RegistryError("BLOB_UPLOAD_INVALID", "a single-PUT session takes its bytes through its presigned URL")
        key = paths.blob_key(digest)
        info = self.storage.stat(key)
        if info is None or self.storage.marker(key) != session.uuid:
            # Either nothing arrived yet, or the blob exists but was written by someone else:
            # linking it would hand this repository bytes it never proved it has.
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                "the blob was not received through this session's URL (not sent yet, or another upload of"
                " the same blob replaced it): PUT it again to the URL from GET on the session, then complete",
                {"uuid": session.uuid},
            )
        if session.size is not None and info.size != session.size:
            raise RegistryError("SIZE_INVALID", detail={"expected": session.size, "actual": info.size})
        blob = self.blobs.link(session.repository, digest, info.size)
        self.storage.delete_prefix(paths.upload_prefix(session.uuid))
        return blob

    def _publish(self, session: Session, digest: str, size: int) -> BlobInfo:
        zeros.publish(self.storage, session.uuid, digest)  # before the blob appears: a visible blob has its record
        self.storage.move(paths.upload_data_key(session.uuid), paths.blob_key(digest))
        blob = self.blobs.link(session.repository, digest, size)
        self.storage.delete_prefix(paths.upload_prefix(session.uuid))
        return blob

    def finish_verification(self, repository: str, upload_id: str, digest: str) -> BlobInfo | None:
        """The verifier's half of :meth:`complete`: hash, then publish, or record why not.

        A failure stays on the session (state ``failed`` with the error) so the
        client polling it learns the outcome; the sweep removes it later.
        """
        session = self.load(repository, upload_id)
        if session.state != "verifying" or session.digest != digest:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID", "this upload is not awaiting verification", {"state": session.state}
            )
        key = paths.upload_data_key(upload_id)
        wanted = digest_parts(digest)
        info = self.storage.stat(key)
        holes = zeros.load_holes(self.storage, upload_id)
        actual = zeros.hash_stored(self.storage, key, wanted.algorithm, info.size, holes) if info is not None else None
        if info is None or actual != wanted.hex:
            self.storage.delete(key)
            session.state = "failed"
            session.error = error_dict(mismatch(digest, str(Digest(wanted.algorithm, actual)) if actual else None))
            self._save(session)
            return None
        with known(upload_id):  # cancelled or swept while we were hashing
            return self._publish(session, digest, info.size)

    def _join(self, session: Session, key: str, body: Body) -> tuple[ObjectInfo, str | None, list[Extent]]:
        """Join the parts (``body``, if any, is the last one).

        Returns the object, its SHA-256 when the backend computed it, and its declared zero ranges (saved too).
        """
        multipart_id = self._multipart(session)
        with known(session.uuid):
            if body:
                self._put_part(session, None, body)
            parts = self.storage.multipart_list_parts(key, multipart_id)
        if not parts:
            # An empty blob: no parts, nothing to join.
            info = self.storage.write(key, b"")
            self.storage.multipart_abort(key, multipart_id)
            return info, EMPTY_SHA256, []
        numbers = [p.number for p in parts]
        if numbers != list(range(1, len(parts) + 1)):
            missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
            raise RegistryError("BLOB_UPLOAD_INVALID", "parts are missing", {"missing": missing[:100]})
        small = [p.number for p in parts[:-1] if p.size < MIN_PART_SIZE]
        if small:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                f"every part but the last must be at least {MIN_PART_SIZE} bytes",
                {"parts": small[:100]},
            )
        try:
            with known(session.uuid):
                info = self.storage.multipart_complete(key, multipart_id, parts)
        except ValueError as exc:
            raise RegistryError("BLOB_UPLOAD_INVALID", str(exc)) from None
        holes = zeros.holes_of(self.storage, session.uuid, parts)
        zeros.save_holes(self.storage, session.uuid, holes)
        return info, info.sha256, holes

    def cancel(self, repository: str, upload_id: str, *, appends: bool = False) -> None:
        session = self.load(repository, upload_id, appends=appends)
        self.discard(session)

    def discard(self, session: Session) -> None:
        """Abort the session's multipart upload and remove everything it stored."""
        key = paths.upload_data_key(session.uuid)
        if session.multipart_id is not None:
            self.storage.multipart_abort(key, session.multipart_id)
        self.storage.delete_prefix(paths.upload_prefix(session.uuid))

    def sweep(self, older_than: float, leftovers_older_than: float | None = None) -> SweepReport:
        """Discard sessions started ``older_than`` seconds ago, and leftovers untouched for ``leftovers_older_than``.

        See :mod:`vmregistry.registry.sweep`; leftovers default to ``older_than``.
        """
        from vmregistry.registry.sweep import sweep

        return sweep(self, older_than, older_than if leftovers_older_than is None else leftovers_older_than)
