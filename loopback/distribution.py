"""CNCF distribution's configuration as the harnesses run it: a throwaway filesystem root, deletes on, no auth.

The settings are the ones Debian's ``docker-registry`` ships (filesystem
driver, in-memory blob descriptor cache), bound to one loopback port.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_config"]

_CONFIG = """\
version: 0.1
log:
  level: {level}
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
{redirect}http:
  addr: 127.0.0.1:{port}
"""
_NO_REDIRECT = """\
  redirect:
    disable: true
"""


def write_config(path: Path, root: Path, port: int, *, level: str = "info", redirect: bool = True) -> Path:
    """Write the configuration to ``path`` (``redirect=False``: blobs always served by the registry itself)."""
    path.write_text(_CONFIG.format(level=level, root=root, port=port, redirect="" if redirect else _NO_REDIRECT))
    return path
