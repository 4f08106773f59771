"""What the client remembers between runs, so an interrupted push picks up where it stopped.

::

    $VMREGISTRY_CACHE_DIR (default $XDG_CACHE_HOME/vmregistry, ~/.cache/vmregistry)
    ├── digests.json            realpath -> {size, mtimeNs, inode, digest, format, virtualSize}
    └── uploads/<key>.json      one per blob being pushed: the upload session's uuid, part size,
                                digest and size; <key> hashes (registry, repository, digest)

The upload session's uuid and part size are all a resumed push needs: the
server's ``GET`` on the session says which parts storage holds (the truth),
and the part size says where each part starts in the file. Pull keeps its
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

__all__ = ["DigestCache", "UploadState", "atomic_write_json", "cache_dir"]

_LOCK = threading.Lock()


def cache_dir() -> Path:
    explicit = os.environ.get("VMREGISTRY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmregistry"


def atomic_write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(value, sort_keys=True))
    os.replace(temporary, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class DigestCache:
    """Digests of files already hashed, valid while size, mtime and inode are unchanged."""

    def __init__(self, root: Path | None = None) -> None:
        self.path = (root or cache_dir()) / "digests.json"

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
            return DiskInfo(
                path, int(entry["size"]), str(entry["digest"]), str(entry["format"]), entry.get("virtualSize")
            )
        except (OSError, KeyError, ValueError):
            return None

    def put(self, info: DiskInfo) -> None:
        with _LOCK:
            entries = _read_json(self.path)
            entries = entries if isinstance(entries, dict) else {}
            entry: dict[str, Any] = self._identity(info.path) | {
                "digest": info.digest,
                "format": info.format,
                "virtualSize": info.virtual_size,
            }
            entries[str(info.path.resolve())] = entry
            atomic_write_json(self.path, entries)


class UploadState:
    """The upload session of one (registry, repository, digest), if a push left one behind."""

    def __init__(self, registry: str, repository: str, digest: str, root: Path | None = None) -> None:
        key = hashlib.sha256(f"{registry}\n{repository}\n{digest}".encode()).hexdigest()[:32]
        self.path = (root or cache_dir()) / "uploads" / f"{key}.json"
        self.identity = {"registry": registry, "repository": repository, "digest": digest}

    def load(self) -> dict[str, Any] | None:
        value = _read_json(self.path)
        if not isinstance(value, dict) or any(value.get(k) != v for k, v in self.identity.items()):
            return None
        return value

    def save(self, uuid: str, part_size: int, size: int) -> None:
        atomic_write_json(self.path, self.identity | {"uuid": uuid, "partSize": part_size, "size": size})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
