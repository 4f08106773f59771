"""Completing an upload session: join its parts, verify the digest, publish the blob.

A single session's bytes are already under their digest (storage checked the
SHA-256 of the presigned PUT): completion links them if this session's marker
is on them. A multipart session's parts are joined under ``uploads/<uuid>/data``
and hashed (by the backend while joining, else read back, declared zeros
hashed from memory); a blob too big to hash within the request goes to the
verifier, which calls :meth:`Completion.finish_verification`. Only bytes that
hash to the digest are moved under ``blobs/`` and linked.
"""

from __future__ import annotations

from vmregistry import paths
from vmregistry.digests import EMPTY_SHA256, Digest
from vmregistry.errors import RegistryError, error_dict
from vmregistry.extents import Extent
from vmregistry.registry import zeros
from vmregistry.registry.blobs import BlobInfo
from vmregistry.registry.body import EMPTY, Body
from vmregistry.registry.session_store import SessionStore
from vmregistry.registry.sessions import Session, UploadStatus, digest_parts, known, mismatch
from vmregistry.storage import MIN_PART_SIZE, ObjectInfo

__all__ = ["Completion"]


class Completion(SessionStore):
    """The end of an upload session: its bytes published under their digest, or discarded."""

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
