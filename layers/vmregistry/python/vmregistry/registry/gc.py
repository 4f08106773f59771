"""Garbage collection: free the bytes of blobs that no repository holds any more.

``DELETE /v1/<name>/blobs/<digest>`` only removes a repository's link, because
the same bytes may be held by other repositories. Collection is a sweep over
the links (``repositories/*/_layers/``, the marks) and then over the blobs: a blob that no link names is
deleted, unless it is younger than the grace period — an upload publishes the
blob a moment before it writes the link, and a young unlinked blob is most
likely exactly that.

It reads every key under ``links/`` and ``blobs/``, so run it off-peak on big
registries (an S3 listing is about 1,000 keys per request).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vmregistry import paths
from vmregistry.storage import Storage

__all__ = ["CollectionReport", "collect_garbage"]

DEFAULT_GRACE = 3600.0


@dataclass(slots=True)
class CollectionReport:
    kept: int = 0
    deleted: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    young: int = 0
    """Unlinked blobs spared because they are younger than the grace period."""


def collect_garbage(storage: Storage, *, grace: float = DEFAULT_GRACE, dry_run: bool = False) -> CollectionReport:
    linked = {key.rsplit("/_layers/", 1)[1] for key in storage.list(paths.REPOSITORIES_PREFIX) if "/_layers/" in key}
    report = CollectionReport()
    cutoff = time.time() - grace
    for key in list(storage.list(paths.BLOBS_PREFIX)):
        digest = paths.digest_of_key(key, paths.BLOBS_PREFIX)
        if digest is None:
            continue
        if key.removeprefix(paths.BLOBS_PREFIX) in linked:
            report.kept += 1
            continue
        info = storage.stat(key)
        if info is None:
            continue
        if info.modified > cutoff:
            report.young += 1
            continue
        if dry_run or storage.delete(key):
            report.deleted.append(digest)
            report.freed_bytes += info.size
    return report
