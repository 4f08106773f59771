"""The filesystem backend's multipart uploads on disk: one directory per upload, found and checked here.

Below ``<root>/.multipart/``, an upload is the directory named by its id (32
hex digits)::

    <upload id>/
        key       the key the object will have; written first, so a directory without it is a leftover
        00001     part 1, one file per part, joined in number order at completion
        ...
        (or, for an upload created with its size, the in-place layout of :mod:`vmregistry.storage.inplace`)

:class:`~vmregistry.storage.filesystem.FilesystemStorage` writes part files
through its atomic temporary files; this module lays out, finds, lists and
removes the directories. A directory belongs to one key: a request naming the
upload with another key, or a part number out of range, is refused before
anything is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from vmregistry.storage import inplace
from vmregistry.storage.base import MAX_PARTS, MultipartUpload, ObjectNotFound, UploadedPart
from vmregistry.storage.fsutil import file_etag

__all__ = ["create", "directory", "list_parts", "list_uploads", "open_upload", "part_file", "remove", "sweep_leftovers"]

_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")


def directory(uploads: Path, upload_id: str) -> Path:
    """The directory of ``upload_id`` below ``uploads`` (``<root>/.multipart``), whether or not it exists."""
    if _UPLOAD_ID_RE.fullmatch(upload_id) is None:
        raise ObjectNotFound(f"no multipart upload {upload_id!r}")
    return uploads / upload_id


def create(uploads: Path, key: str, size: int | None) -> str:
    """A new upload for ``key`` (written in place when ``size`` is given); its id."""
    upload_id = uuid.uuid4().hex
    made = uploads / upload_id
    made.mkdir()
    try:
        (made / "key").write_text(key)
        if size is not None:
            inplace.create(made, size)
    except BaseException:
        shutil.rmtree(made, ignore_errors=True)
        raise
    return upload_id


def open_upload(uploads: Path, key: str, upload_id: str, number: int) -> tuple[Path, int | None]:
    """The upload's directory and, if it is written in place, its declared size (checked: key, part number)."""
    found = directory(uploads, upload_id)
    try:
        owner = (found / "key").read_text()
    except FileNotFoundError:
        raise ObjectNotFound(f"no multipart upload {upload_id!r}") from None
    if owner != key:
        raise ObjectNotFound(f"multipart upload {upload_id!r} is not for {key!r}")
    if not 1 <= number <= MAX_PARTS:
        raise ValueError(f"part numbers run from 1 to {MAX_PARTS}")
    return found, inplace.declared_size(found)


def part_file(upload: Path, number: int) -> Path:
    """Where part ``number`` of an upload with a file per part is kept (names sort in number order)."""
    return upload / f"{number:05d}"


def list_parts(upload: Path, size: int | None) -> list[UploadedPart]:
    """The parts stored so far, in number order (``size``: the upload's declared size, if in place)."""
    if size is not None:
        return inplace.list_parts(upload)
    parts = []
    for entry in sorted(os.scandir(upload), key=lambda e: e.name):
        if entry.name.isdigit():
            st = entry.stat()
            parts.append(UploadedPart(int(entry.name), st.st_size, file_etag(st)))
    return parts


def list_uploads(uploads: Path, prefix: str) -> Iterator[MultipartUpload]:
    """Uploads in progress for keys under ``prefix``, each dated by its latest change."""
    for entry in sorted(os.scandir(uploads), key=lambda e: e.name):
        if _UPLOAD_ID_RE.fullmatch(entry.name) is None:
            continue
        try:
            key = (Path(entry.path) / "key").read_text()
            modified = max(e.stat().st_mtime for e in [entry, *os.scandir(entry.path)])
        except (FileNotFoundError, NotADirectoryError):
            continue  # completed or aborted meanwhile
        if key.startswith(prefix):
            yield MultipartUpload(key, entry.name, modified)


def sweep_leftovers(uploads: Path, cutoff: float) -> tuple[int, int]:
    """Remove upload directories without their key file, unchanged since ``cutoff``; (files, bytes) freed."""
    files = freed = 0
    # An upload directory without its key file: what an interrupted abort or completion left.
    for entry in os.scandir(uploads):
        with contextlib.suppress(FileNotFoundError):
            if not os.path.exists(os.path.join(entry.path, "key")) and entry.stat().st_mtime < cutoff:
                sizes = [p.stat().st_size for p in Path(entry.path).rglob("*") if p.is_file()]
                shutil.rmtree(entry.path, ignore_errors=True)
                files, freed = files + len(sizes), freed + sum(sizes)
    return files, freed


def remove(uploads: Path, upload_id: str) -> None:
    """Remove the upload whole, if it is there."""
    with contextlib.suppress(ObjectNotFound):
        shutil.rmtree(directory(uploads, upload_id), ignore_errors=True)
