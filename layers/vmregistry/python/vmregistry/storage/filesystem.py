"""The filesystem backend: objects are files below one root directory.

Every write goes to a temporary file under ``<root>/.tmp``, is fsynced and
renamed into place, so a crash or a failed checksum never leaves a partial or
wrong file under a final name. Multipart parts live under
``<root>/.multipart/<upload id>/``. Keys are checked by the contract
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

import bisect
import builtins  # the contract's list() method shadows the builtin inside the class
import contextlib
import errno
import functools
import hashlib
import itertools
import os
import re
import secrets
import shutil
import stat as stat_module
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from vmregistry.storage.base import (
    MAX_PART_SIZE,
    MAX_PARTS,
    ChecksumMismatch,
    InvalidKey,
    MultipartUpload,
    ObjectInfo,
    ObjectNotFound,
    PresignedRequest,
    Readable,
    Storage,
    StorageFull,
    UploadedPart,
    check_key,
)
from vmregistry.storage.pump import ConcatenatedFiles, copy_hashing
from vmregistry.storage.signing import UrlSigner

__all__ = ["FilesystemStorage", "Readable"]

_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")


def _etag(st: os.stat_result) -> str:
    return f"{st.st_size:x}-{st.st_mtime_ns:x}"


def _info(key: str, st: os.stat_result, sha256: str | None = None) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, modified=st.st_mtime, etag=_etag(st), sha256=sha256)


_F = TypeVar("_F", bound=Callable[..., Any])
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def _space_checked(method: _F) -> _F:
    """A write that runs out of space is :class:`StorageFull` (its temporary file is already gone)."""

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise StorageFull(f"no space left on the storage volume: {exc.strerror}") from exc
            raise

    return checked  # type: ignore[return-value]


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

    def _upload_dir(self, upload_id: str) -> Path:
        if _UPLOAD_ID_RE.fullmatch(upload_id) is None:
            raise ObjectNotFound(f"no multipart upload {upload_id!r}")
        return self._multipart / upload_id

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
        yield from self._walk(start, directory + "/" if directory else "", prefix, start_after)

    @staticmethod
    def _entries(directory: Path) -> builtins.list[str] | None:
        """The directory's entries as they sort in keys (a subdirectory ``d`` as ``d/``), sorted; None if absent.

        A directory without subdirectories (its link count is 2 on ext4, xfs and tmpfs: itself and its
        ``.``) is read with ``listdir``, no per-entry type check: a page of 10,000 tags costs half.
        """
        try:
            if os.stat(directory).st_nlink == 2:
                names = [name for name in os.listdir(directory) if not name.startswith(".")]
            else:
                with os.scandir(directory) as entries:
                    names = [
                        entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name
                        for entry in entries
                        if not entry.name.startswith(".")  # .tmp, .multipart, .markers: never keys
                    ]
        except (FileNotFoundError, NotADirectoryError):
            return None
        names.sort()
        return names

    def _walk(self, directory: Path, base: str, prefix: str, start_after: str | None) -> Iterator[str]:
        """Keys below ``directory`` (whose keys start with ``base``) in byte order, skipping what cannot match.

        A directory ``d`` sorts as ``d/``: every key below it starts with that, so
        ordering entries this way orders the keys exactly as S3 does.
        """
        found = self._entries(directory)
        if found is None:
            return
        first = 0
        if start_after is not None and start_after.startswith(base):
            # Entries whose key is before start_after and not a directory holding it: skip them at once.
            rest = start_after[len(base) :]
            first = bisect.bisect_left(found, rest.split("/", 1)[0])
        for sort_name in itertools.islice(found, first, None):
            key = base + sort_name
            if not (key.startswith(prefix) or prefix.startswith(key)):
                if key > prefix:
                    return  # sorted: nothing further can start with the prefix
                continue
            if start_after is not None and key <= start_after and not start_after.startswith(key):
                continue  # the key, or the whole directory, sorts before start_after
            if sort_name.endswith("/"):
                yield from self._walk(directory / sort_name[:-1], key, prefix, start_after)
            elif start_after is None or key > start_after:
                yield key

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
    def multipart_create(self, key: str) -> str:
        self.path(key)
        upload_id = uuid.uuid4().hex
        directory = self._multipart / upload_id
        directory.mkdir()
        try:
            (directory / "key").write_text(key)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return upload_id

    def _part_path(self, key: str, upload_id: str, number: int) -> Path:
        directory = self._upload_dir(upload_id)
        try:
            owner = (directory / "key").read_text()
        except FileNotFoundError:
            raise ObjectNotFound(f"no multipart upload {upload_id!r}") from None
        if owner != key:
            raise ObjectNotFound(f"multipart upload {upload_id!r} is not for {key!r}")
        if not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part numbers run from 1 to {MAX_PARTS}")
        return directory / f"{number:05d}"

    @_space_checked
    def multipart_put_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        target = self._part_path(key, upload_id, number)
        with self._temporary() as (handle, tmp):
            handle.write(data)
            info = self._finish(handle, tmp, target, key, None)
        return UploadedPart(number, info.size, info.etag or "")

    @_space_checked
    def receive_part(self, key: str, upload_id: str, number: int, source: Readable, length: int | None) -> UploadedPart:
        """Stream one part from the data plane."""
        target = self._part_path(key, upload_id, number)
        info = self._receive(key, target, source, length, None)
        return UploadedPart(number, info.size, info.etag or "")

    def multipart_move_part(self, key: str, upload_id: str, number: int, source: str) -> UploadedPart:
        target = self._part_path(key, upload_id, number)
        src = self.path(source)
        try:
            size = src.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(source) from None
        if size > MAX_PART_SIZE:
            raise ValueError(f"a part is at most {MAX_PART_SIZE} bytes")
        self._clear_marker(source)
        os.replace(src, target)  # the same volume: a rename, whatever the size
        self._prune(src.parent)
        st = os.stat(target)
        return UploadedPart(number, st.st_size, _etag(st))

    def multipart_list_uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        for entry in sorted(os.scandir(self._multipart), key=lambda e: e.name):
            if _UPLOAD_ID_RE.fullmatch(entry.name) is None:
                continue
            try:
                key = (Path(entry.path) / "key").read_text()
                modified = max(e.stat().st_mtime for e in [entry, *os.scandir(entry.path)])
            except (FileNotFoundError, NotADirectoryError):
                continue  # completed or aborted meanwhile
            if key.startswith(prefix):
                yield MultipartUpload(key, entry.name, modified)

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
        return files, freed

    def multipart_presign_part(self, key: str, upload_id: str, number: int, expires_in: int) -> PresignedRequest | None:
        if self.signer is None:
            return None
        self._part_path(key, upload_id, number)
        url, expires = self.signer.sign("part", {"key": key, "upload": upload_id, "part": str(number)}, expires_in)
        return PresignedRequest(url=url, method="PUT", expires_at=expires)

    def multipart_list_parts(self, key: str, upload_id: str) -> builtins.list[UploadedPart]:
        directory = self._part_path(key, upload_id, 1).parent
        parts = []
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name.isdigit():
                st = entry.stat()
                parts.append(UploadedPart(int(entry.name), st.st_size, _etag(st)))
        return parts

    @_space_checked
    def multipart_complete(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> ObjectInfo:
        self.check_parts(key, upload_id, parts)
        directory = self._upload_dir(upload_id)
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
        with contextlib.suppress(ObjectNotFound):
            shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)
