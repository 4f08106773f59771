"""The upload sweep: what nobody will finish, and the leftovers of requests that died, removed.

Two kinds of things are swept, with two ages:

* **Sessions** (``uploads/<uuid>/session.json``) started more than ``older_than``
  seconds ago (a day, in the server) are discarded with their parts: the
  client had its chance to finish or resume.
* **Leftovers** of requests that did not end normally (a killed process, a
  crash): keys under ``uploads/`` without a session (a staged body whose
  request died, data a presigned PUT sent after its session was cancelled),
  multipart uploads whose session is gone (a server-side streamed PUT on S3,
  a session that was never saved), and the backend's temporary files
  (:meth:`Storage.sweep_temporary <vmregistry.storage.base.Storage.sweep_temporary>`).
  Each is removed once it has not changed for ``leftovers_older_than``
  seconds. That age must exceed the longest a live request can leave its
  state untouched: a request's temporary file grows while its body arrives,
  and the local server drops a connection silent for
  :data:`~vmregistry.local.http.IDLE_TIMEOUT`; the server sweeps leftovers
  an hour old. A staged body is never older than its request's handler.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

from vmregistry import paths

if TYPE_CHECKING:
    from vmregistry.registry.uploads import Uploads
    from vmregistry.storage import ObjectInfo

__all__ = ["SweepReport", "sweep"]


class SweepReport(NamedTuple):
    """What :func:`sweep` removed."""

    sessions: int = 0
    """Upload sessions nobody finished, with their parts."""
    orphans: int = 0
    """Groups of keys under ``uploads/<id>/`` without a session (staged bodies, data that lost its session)."""
    multipart: int = 0
    """Multipart uploads whose session is gone, aborted."""
    temporary_files: int = 0
    temporary_bytes: int = 0
    """The backend's temporary files of interrupted writes, and their total size."""

    def __bool__(self) -> bool:
        return any(self)

    def __str__(self) -> str:
        return (
            f"{self.sessions} upload session(s), {self.orphans} orphaned upload object(s),"
            f" {self.multipart} abandoned multipart upload(s), {self.temporary_files} temporary file(s)"
            f" ({self.temporary_bytes} bytes)"
        )


def sweep(uploads: Uploads, older_than: float, leftovers_older_than: float) -> SweepReport:
    storage = uploads.storage
    now = time.time()
    sessions_cutoff, leftovers_cutoff = now - older_than, now - leftovers_older_than
    sessions = orphans = multipart = 0
    by_upload: dict[str, list[ObjectInfo]] = {}
    for info in storage.scan(paths.UPLOADS_PREFIX):  # on S3 the listing carries each key's age: no HEADs
        by_upload.setdefault(info.key.removeprefix(paths.UPLOADS_PREFIX).split("/", 1)[0], []).append(info)
    for upload_id, infos in by_upload.items():
        if any(info.key == paths.upload_session_key(upload_id) for info in infos):
            session = uploads.find(upload_id)
            if session is not None and session.created < sessions_cutoff:
                uploads.discard(session)
                sessions += 1
            continue
        if all(info.modified < leftovers_cutoff for info in infos):
            storage.delete_many([info.key for info in infos])
            orphans += 1
    for upload in list(storage.multipart_list_uploads(paths.UPLOADS_PREFIX)):
        upload_id = upload.key.removeprefix(paths.UPLOADS_PREFIX).split("/", 1)[0]
        if upload.modified >= leftovers_cutoff:
            continue  # may be a request still sending it
        session = uploads.find(upload_id)
        if session is None or session.multipart_id != upload.upload_id:
            storage.multipart_abort(upload.key, upload.upload_id)
            multipart += 1
    files, freed = storage.sweep_temporary(leftovers_older_than)
    return SweepReport(sessions, orphans, multipart, files, freed)
