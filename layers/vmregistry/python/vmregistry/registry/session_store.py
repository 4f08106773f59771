"""Where upload sessions live, and the checks every operation on one makes first.

:class:`SessionStore` keeps a :class:`~vmregistry.registry.sessions.Session` as
``uploads/<uuid>/session.json``, loads it for the repository that owns it and
through the API that started it, signs a single session's PUT, stores a part
where the session places it, and discards what a session stored.
:class:`~vmregistry.registry.completion.Completion` (joining, verifying,
publishing) and :class:`~vmregistry.registry.uploads.Uploads` (starting,
taking parts) build on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from vmregistry import paths
from vmregistry.config import Settings
from vmregistry.errors import RegistryError
from vmregistry.oci.jsondoc import parse_document
from vmregistry.registry.blobs import Blobs
from vmregistry.registry.body import Body
from vmregistry.registry.sessions import Session, UploadVerifier, digest_parts
from vmregistry.storage import MAX_PART_SIZE, ObjectNotFound, PresignedRequest, Storage, UploadedPart

__all__ = ["SessionStore"]


class SessionStore:
    """Upload sessions in storage, for the operations that start, fill and complete them."""

    def __init__(
        self, storage: Storage, settings: Settings, blobs: Blobs, verifier: UploadVerifier | None = None
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.blobs = blobs
        self.verifier = verifier

    def _save(self, session: Session) -> None:
        self.storage.write(paths.upload_session_key(session.uuid), json.dumps(asdict(session)).encode())

    def find(self, upload_id: str) -> Session | None:
        """The session ``upload_id``, whatever its repository; None if it is gone or unreadable."""
        try:
            return Session(**parse_document(self.storage.read(paths.upload_session_key(upload_id))))
        except (ObjectNotFound, ValueError, TypeError):
            return None

    def load(self, repository: str, upload_id: str, *, appends: bool = False) -> Session:
        """The session, if it exists and belongs to ``repository``; BLOB_UPLOAD_UNKNOWN otherwise.

        ``appends``: the caller speaks the OCI protocol (:mod:`.appends`); a session
        continues only through the API that started it (their parts mean different things).
        """
        session = self.find(upload_id)
        if session is None or session.repository != repository:
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

    @staticmethod
    def _open(session: Session) -> None:
        if session.state != "open":
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                f"this upload is {session.state}; GET the session for its outcome, HEAD the blob to see it published",
                {"state": session.state, "error": session.error},
            )

    def discard(self, session: Session) -> None:
        """Abort the session's multipart upload and remove everything it stored."""
        key = paths.upload_data_key(session.uuid)
        if session.multipart_id is not None:
            self.storage.multipart_abort(key, session.multipart_id)
        self.storage.delete_prefix(paths.upload_prefix(session.uuid))
