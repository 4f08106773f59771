"""The filesystem backend: objects are files below one root directory.

Every write goes to a temporary file under ``<root>/.tmp``, is fsynced and
renamed into place, so a crash or a failed checksum never leaves a partial or
wrong file under a final name. Multipart uploads live under
``<root>/.multipart/<upload id>/`` (:mod:`vmregistry.storage.fs_uploads`): one
file per part, joined at completion, or, for an upload created with its size,
one file the parts are written into at their offsets
(:mod:`vmregistry.storage.inplace`), renamed at completion.
Keys are checked by the contract
(:func:`~vmregistry.storage.base.check_key`) and the resolved path must stay
inside the root: no key reaches a dot directory or anything outside.

A full disk (``ENOSPC``, ``EDQUOT``) on any write is :class:`StorageFull`, and
the temporary file is gone. A write that was killed leaves its temporary file;
:meth:`FilesystemStorage.sweep_temporary` removes those that stopped growing
long ago (the local server does at start and hourly).

Presigned URLs point at the local data plane (:mod:`vmregistry.local.dataplane`)
when a :class:`~vmregistry.storage.signing.UrlSigner` is given; without one the
``presign_*`` methods return ``None``. The ``receive_*`` methods are the data
plane's side: they stream a request body to disk, hashing as they go.
"""

from __future__ import annotations

import builtins  # the contract's list() method shadows the builtin inside the class
import contextlib
import hashlib
import os
import secrets
import shutil
import stat as stat_module
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vmregistry.storage import fs_uploads, inplace
from vmregistry.storage.base import (
    MAX_PART_SIZE,
    MAX_ZERO_PART_SIZE,
    ChecksumMismatch,
    InvalidKey,
    MultipartUpload,
    ObjectInfo,
    ObjectNotFound,
    PresignedRequest,
    Readable,
    Storage,
    UploadedPart,
    check_key,
)
from vmregistry.storage.fs_uploads import part_file
from vmregistry.storage.fsutil import file_etag, walk_keys
from vmregistry.storage.fsutil import space_checked as _space_checked
from vmregistry.storage.pump import ConcatenatedFiles, copy_hashing
from vmregistry.storage.signing import UrlSigner

__all__ = ["FilesystemStorage", "Readable"]


def _info(key: str, st: os.stat_result, sha256: str | None = None) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, modified=st.st_mtime, etag=file_etag(st), sha256=sha256)


class FilesystemStorage(Storage):
    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str], signer: UrlSigner | None = None) -> None:
        self.root = Path(root).resolve()
        self.signer = signer
        self._tmp = self.root / ".tmp"
        self._multipart = self.root / ".multipart"
        self._markers = self.root / ".markers"
        for directory in (self.root, self._tmp, self._multipart, self._markers):
            directory.mkdir(parents=True, exist_ok=True)

    # -- keys ------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """The file behind ``key``; :class:`InvalidKey` for anything that could escape the root."""
        path = self.root.joinpath(*check_key(key).split("/"))
        if not path.is_relative_to(self.root):  # defence in depth; the regex already forbids '..'
            raise InvalidKey(f"storage key {key!r} escapes the root")
        return path

    # -- atomic file creation ------------------------------------------------------

    @contextlib.contextmanager
    def _temporary(self) -> Iterator[tuple[BinaryIO, Path]]:
        tmp = self._tmp / secrets.token_hex(16)
        handle = open(tmp, "xb")  # noqa: SIM115 - closed below, then renamed or removed
        try:
            yield handle, tmp
        except BaseException:
            handle.close()
            tmp.unlink(missing_ok=True)
            raise
        handle.close()

    def _publish(self, tmp: Path, target: Path) -> None:
        # A concurrent delete prunes empty parents (_prune), so the parent may vanish between
        # mkdir and rename, or even inside mkdir: it finds the directory there (EEXIST) and then
        # not (is_dir), and raises FileExistsError; or it made a grandparent that was pruned
        # before it could make the parent in it, and raises FileNotFoundError. Either way, make
        # it again and retry.
        for _ in range(5):
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, target)
                return
            except FileNotFoundError:
                if not tmp.exists():
                    raise
        os.replace(tmp, target)

    def _finish(self, handle: BinaryIO, tmp: Path, target: Path, key: str, sha256: str | None) -> ObjectInfo:
        handle.flush()
        os.fsync(handle.fileno())
        st = os.fstat(handle.fileno())
        handle.close()
        self._publish(tmp, target)
        return _info(key, st, sha256)

    def _receive(self, key: str, target: Path, source: Readable, length: int | None, sha256: str | None) -> ObjectInfo:
        """Stream ``source`` (``length`` bytes, or to its end when ``None``) into ``target``."""
        with self._temporary() as (handle, tmp):
            if length:
                # Reserve the blocks up front: a full disk fails now, not after gigabytes, and
                # writes into preallocated extents cost the filesystem less than growing the file.
                os.posix_fallocate(handle.fileno(), 0, length)
            # Reading, hashing and writing overlap in a pipeline (see vmregistry.storage.pump).
            actual, _ = copy_hashing(source, handle, length)
            if sha256 is not None and actual != sha256:
                raise ChecksumMismatch(f"expected sha256:{sha256}, received sha256:{actual}")
            return self._finish(handle, tmp, target, key, actual)

    # -- reading -------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return None if stat_module.S_ISDIR(st.st_mode) else _info(key, st)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with open(self.path(key), "rb") as handle:
                handle.seek(offset)
                return handle.read() if length is None else handle.read(length)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None

    def list(self, prefix: str, *, start_after: str | None = None, page_size: int | None = None) -> Iterator[str]:
        # Start in the directory the prefix names, then walk in key order, lazily. (page_size: nothing
        # to save here, a directory is read whole.)
        directory, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        yield from walk_keys(start, directory + "/" if directory else "", prefix, start_after)

    # -- writing -------------------------------------------------------------------

    @_space_checked
    def write(self, key: str, data: bytes, *, sha256: str | None = None) -> ObjectInfo:
        target = self.path(key)
        actual = hashlib.sha256(data).hexdigest()
        if sha256 is not None and actual != sha256:
            raise ChecksumMismatch(f"expected sha256:{sha256}, received sha256:{actual}")
        self._clear_marker(key)
        with self._temporary() as (handle, tmp):
            handle.write(data)
            return self._finish(handle, tmp, target, key, actual)

    @_space_checked
    def receive(
        self, key: str, source: Readable, length: int | None, *, sha256: str | None = None, marker: str | None = None
    ) -> ObjectInfo:
        """The contract's :meth:`~Storage.receive`; ``marker`` is the data plane's (a presigned PUT's)."""
        info = self._receive(key, self.path(key), source, length, sha256)
        if marker is not None:
            self._set_marker(key, marker)
        return info

    # -- markers: a sidecar per key, so the object files stay plain bytes ----------

    def _marker_path(self, key: str) -> Path:
        return self._markers / hashlib.sha256(key.encode()).hexdigest()

    def _set_marker(self, key: str, marker: str) -> None:
        with self._temporary() as (handle, tmp):
            handle.write(marker.encode())
            handle.close()
            os.replace(tmp, self._marker_path(key))

    def _clear_marker(self, key: str) -> None:
        self._marker_path(key).unlink(missing_ok=True)

    def marker(self, key: str) -> str | None:
        self.path(key)
        try:
            return self._marker_path(key).read_text()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> bool:
        path = self.path(key)
        self._clear_marker(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        self._prune(path.parent)
        return True

    def _prune(self, directory: Path) -> None:
        """Remove now-empty parents so listings do not show ghosts of deleted repositories."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    @_space_checked
    def move(self, source: str, destination: str) -> None:
        src = self.path(source)
        if not src.is_file():
            raise ObjectNotFound(source)
        self._clear_marker(destination)
        self._publish(src, self.path(destination))
        self._prune(src.parent)

    # -- redirects -------------------------------------------------------------------

    def presign_get(self, key: str, expires_in: int) -> str | None:
        if self.signer is None:
            return None
        self.path(key)
        url, _ = self.signer.sign("get", {"key": key}, expires_in)
        return url

    def presign_put(
        self, key: str, expires_in: int, *, sha256: str, size: int | None = None, marker: str | None = None
    ) -> PresignedRequest | None:
        if self.signer is None:
            return None
        self.path(key)
        params = {"key": key, "sha256": sha256} | ({"marker": marker} if marker is not None else {})
        url, expires = self.signer.sign("put", params, expires_in)
        return PresignedRequest(url=url, method="PUT", expires_at=expires)

    # -- multipart -------------------------------------------------------------------

    @_space_checked
    def multipart_create(self, key: str, size: int | None = None) -> str:
        self.path(key)
        return fs_uploads.create(self._multipart, key, size)

    def _upload(self, key: str, upload_id: str, number: int) -> tuple[Path, int | None]:
        return fs_uploads.open_upload(self._multipart, key, upload_id, number)

    @_space_checked
    def multipart_put_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray, *, offset: int | None = None
    ) -> UploadedPart:
        directory, size = self._upload(key, upload_id, number)
        if size is not None:
            return inplace.put_bytes(directory, number, offset, data)
        with self._temporary() as (handle, tmp):
            handle.write(data)
            info = self._finish(handle, tmp, part_file(directory, number), key, None)
        return UploadedPart(number, info.size, info.etag or "")

    @_space_checked
    def receive_part(
        self, key: str, upload_id: str, number: int, source: Readable, length: int | None, offset: int | None = None
    ) -> UploadedPart:
        """Stream one part from the data plane (to its ``offset``, in an upload written in place)."""
        directory, size = self._upload(key, upload_id, number)
        if size is not None:
            return inplace.receive(directory, number, offset, source, length)
        info = self._receive(key, part_file(directory, number), source, length, None)
        return UploadedPart(number, info.size, info.etag or "")

    @_space_checked
    def multipart_zero_part(
        self, key: str, upload_id: str, number: int, size: int, *, offset: int | None = None
    ) -> UploadedPart:
        if not 1 <= size <= MAX_ZERO_PART_SIZE:
            raise ValueError(f"a zero part has 1 to {MAX_ZERO_PART_SIZE} bytes")
        directory, declared = self._upload(key, upload_id, number)
        if declared is not None:
            return inplace.zero(directory, number, offset, size)
        with self._temporary() as (handle, tmp):
            handle.truncate(size)  # a sparse file: the join reads its hole as zeros
            info = self._finish(handle, tmp, part_file(directory, number), key, None)
        return UploadedPart(number, info.size, info.etag or "")

    @_space_checked
    def multipart_move_part(
        self, key: str, upload_id: str, number: int, source: str, *, offset: int | None = None
    ) -> UploadedPart:
        directory, declared = self._upload(key, upload_id, number)
        src = self.path(source)
        try:
            size = src.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(source) from None
        if size > MAX_PART_SIZE:
            raise ValueError(f"a part is at most {MAX_PART_SIZE} bytes")
        self._clear_marker(source)
        if declared is not None:
            part = inplace.put_bytes(directory, number, offset, src)  # a copy in the kernel, then the staged file goes
            src.unlink()
        else:
            target = part_file(directory, number)
            os.replace(src, target)  # the same volume: a rename, whatever the size
            st = os.stat(target)
            part = UploadedPart(number, st.st_size, file_etag(st))
        self._prune(src.parent)
        return part

    def multipart_list_uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        return fs_uploads.list_uploads(self._multipart, prefix)

    def sweep_temporary(self, older_than: float) -> tuple[int, int]:
        cutoff = time.time() - older_than
        files = freed = 0
        for entry in os.scandir(self._tmp):
            try:
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime >= cutoff:
                    continue  # may belong to a write in progress
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # published or removed by its own write meanwhile
            files += 1
            freed += st.st_size
        upload_files, upload_bytes = fs_uploads.sweep_leftovers(self._multipart, cutoff)
        return files + upload_files, freed + upload_bytes

    def multipart_presign_part(
        self, key: str, upload_id: str, number: int, expires_in: int, *, offset: int | None = None
    ) -> PresignedRequest | None:
        if self.signer is None:
            return None
        self._upload(key, upload_id, number)
        params = {"key": key, "upload": upload_id, "part": str(number)}
        if offset is not None:
            params["offset"] = str(offset)
        url, expires = self.signer.sign("part", params, expires_in)
        return PresignedRequest(url=url, method="PUT", expires_at=expires)

    def multipart_list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        return fs_uploads.list_parts(*self._upload(key, upload_id, 1))

    @_space_checked
    def multipart_complete(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> ObjectInfo:
        self.check_parts(key, upload_id, parts)
        directory = fs_uploads.directory(self._multipart, upload_id)
        if inplace.declared_size(directory) is not None:
            data, sha256, st = inplace.complete(directory, parts)
            self._clear_marker(key)
            self._publish(data, self.path(key))
            shutil.rmtree(directory, ignore_errors=True)
            return _info(key, st, sha256)
        with (
            self._temporary() as (handle, tmp),
            ConcatenatedFiles([directory / f"{part.number:05d}" for part in parts]) as source,
        ):
            total = sum(part.size for part in parts)
            if total:
                os.posix_fallocate(handle.fileno(), 0, total)
            # One pass that both joins and hashes (pipelined): the domain layer then need not re-read.
            actual, _ = copy_hashing(source, handle, None)
            info = self._finish(handle, tmp, self.path(key), key, actual)
        shutil.rmtree(directory, ignore_errors=True)
        return info

    def multipart_abort(self, key: str, upload_id: str) -> None:
        fs_uploads.remove(self._multipart, upload_id)
