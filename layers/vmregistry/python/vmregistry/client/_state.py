"""What the client remembers between runs, so an interrupted push picks up where it stopped.

::

    $VMREGISTRY_CACHE_DIR (default $XDG_CACHE_HOME/vmregistry, ~/.cache/vmregistry)
    ├── digests.json            realpath -> {size, mtimeNs, inode, digest, format, virtualSize}
    ├── extents/<key>.txt       the disk's data extents as read ("offset+length,..."); <key> hashes the realpath
    └── uploads/<key>.json      one per blob being pushed: the upload session's uuid, part size and
                                size; <key> hashes (registry, repository, subject): the disk file as
                                it is now (realpath, size, mtime, inode), or the digest of bytes in memory

The upload session's uuid and part size are all a resumed push needs: the
server's ``GET`` on the session says which parts storage holds (the truth),
and the plan (:mod:`._plan`, from the disk's extents and the part size) says
where each part starts in the file. A disk's upload is keyed by the file, not
its digest: a push that was stopped before it finished reading the disk did
not know the digest yet. Pull keeps its
state next to the output instead (``<file>.partial`` and ``<file>.partial.json``),
because that is where the half-written data is.

Files are replaced atomically (write, then rename), so a kill at any moment
leaves either the old or the new state.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from vmregistry.client._image import DiskInfo
from vmregistry.extents import ExtentError, format_extents, parse_extents

__all__ = ["DigestCache", "UploadState", "atomic_write_json", "cache_dir", "file_identity"]

_LOCK = threading.Lock()


def cache_dir() -> Path:
    explicit = os.environ.get("VMREGISTRY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmregistry"


def atomic_write_json(path: Path, value: Any, *, private: bool = False, indent: int | None = None) -> None:
    """Replace ``path`` with ``value`` as JSON, atomically (a temporary file renamed over it).

    ``private``: a secret's file, created 0600 from the start (never readable by others, not even
    briefly), in a directory made 0700.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=indent, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def file_identity(path: Path) -> str:
    """The file as it is now: another path, size, mtime or inode is another file."""
    st = path.stat()
    return f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class DigestCache:
    """Digests of files already hashed, valid while size, mtime and inode are unchanged."""

    def __init__(self, root: Path | None = None) -> None:
        self.path = (root or cache_dir()) / "digests.json"
        self.extents = self.path.with_name("extents")

    def _extents_path(self, path: Path) -> Path:
        return self.extents / f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]}.txt"

    @staticmethod
    def _identity(path: Path) -> dict[str, int]:
        st = path.stat()
        return {"size": st.st_size, "mtimeNs": st.st_mtime_ns, "inode": st.st_ino}

    def get(self, path: Path) -> DiskInfo | None:
        entries = _read_json(self.path)
        if not isinstance(entries, dict):
            return None
        entry = entries.get(str(path.resolve()))
        try:
            if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in self._identity(path).items()):
                return None
            size = int(entry["size"])
            extents = None
            if entry.get("extents"):
                extents = tuple(parse_extents(self._extents_path(path).read_text(), size))
            return DiskInfo(path, size, str(entry["digest"]), str(entry["format"]), entry.get("virtualSize"), extents)
        except (OSError, KeyError, ValueError, ExtentError):
            return None

    def put(self, info: DiskInfo) -> None:
        with _LOCK:
            entries = _read_json(self.path)
            entries = entries if isinstance(entries, dict) else {}
            if info.extents is not None:
                extents = self._extents_path(info.path)
                extents.parent.mkdir(parents=True, exist_ok=True)
                temporary = extents.with_name(f".{extents.name}.{os.getpid()}.tmp")
                temporary.write_text(format_extents(info.extents))
                os.replace(temporary, extents)
            entry: dict[str, Any] = self._identity(info.path) | {
                "digest": info.digest,
                "format": info.format,
                "virtualSize": info.virtual_size,
                "extents": info.extents is not None,
            }
            entries[str(info.path.resolve())] = entry
            atomic_write_json(self.path, entries)


class UploadState:
    """The upload session of one (registry, repository, subject), if a push left one behind.

    ``subject``: :func:`file_identity` for a disk, the digest for bytes in memory.
    """

    def __init__(self, registry: str, repository: str, subject: str, root: Path | None = None) -> None:
        key = hashlib.sha256(f"{registry}\n{repository}\n{subject}".encode()).hexdigest()[:32]
        self.path = (root or cache_dir()) / "uploads" / f"{key}.json"
        self.identity = {"registry": registry, "repository": repository, "subject": subject}

    def load(self) -> dict[str, Any] | None:
        value = _read_json(self.path)
        if not isinstance(value, dict) or any(value.get(k) != v for k, v in self.identity.items()):
            return None
        return value

    def save(self, uuid: str, part_size: int, size: int) -> None:
        atomic_write_json(self.path, self.identity | {"uuid": uuid, "partSize": part_size, "size": size})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
