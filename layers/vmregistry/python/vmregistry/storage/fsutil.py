"""Pieces of the filesystem backend: a full disk as the contract's error, keys listed as S3 lists them, ETags.

* :func:`space_checked`: ``ENOSPC`` / ``EDQUOT`` from any write become
  :class:`~vmregistry.storage.base.StorageFull` (the write's temporary file is
  already gone by then).
* :func:`walk_keys`: the backend's :meth:`list <vmregistry.storage.filesystem.FilesystemStorage.list>`,
  a directory tree listed lazily, in byte order, from a prefix and after a key.
  Dot entries (``.tmp``, ``.multipart``, ``.markers``) are never keys.
* :func:`file_etag`: a file's ETag, from its size and modification time.
"""

from __future__ import annotations

import bisect
import errno
import functools
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from vmregistry.storage.base import StorageFull

__all__ = ["file_etag", "space_checked", "walk_keys"]

_F = TypeVar("_F", bound=Callable[..., Any])
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def space_checked(method: _F) -> _F:
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


def file_etag(st: os.stat_result) -> str:
    """Changes whenever the file is rewritten (its size or nanosecond modification time)."""
    return f"{st.st_size:x}-{st.st_mtime_ns:x}"


def _entries(directory: Path) -> list[str] | None:
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


def walk_keys(directory: Path, base: str, prefix: str, start_after: str | None) -> Iterator[str]:
    """Keys below ``directory`` (whose keys start with ``base``) in byte order, skipping what cannot match.

    A directory ``d`` sorts as ``d/``: every key below it starts with that, so
    ordering entries this way orders the keys exactly as S3 does.
    """
    found = _entries(directory)
    if found is None:
        return
    first = 0
    if start_after is not None and start_after.startswith(base):
        # Entries whose key is before start_after and not a directory holding it: skip them at once.
        first = bisect.bisect_left(found, start_after[len(base) :].split("/", 1)[0])
    for sort_name in itertools.islice(found, first, None):
        key = base + sort_name
        if not (key.startswith(prefix) or prefix.startswith(key)):
            if key > prefix:
                return  # sorted: nothing further can start with the prefix
            continue
        if start_after is not None and key <= start_after and not start_after.startswith(key):
            continue  # the key, or the whole directory, sorts before start_after
        if sort_name.endswith("/"):
            yield from walk_keys(directory / sort_name[:-1], key, prefix, start_after)
        elif start_after is None or key > start_after:
            yield key
