"""A request body as the domain takes it: bytes in memory, or an object already staged in storage.

In AWS, API Gateway hands a function the whole body (a few MB at most), so
the bytes are in memory. The local server streams the body of routes that
take blobs into storage first (:mod:`vmregistry.local.gateway`), hashing it
as it arrives, and hands the handler only where it is, its size and its
SHA-256. Operations that take a blob (a blob PUT, an upload chunk) take a
:class:`Body` and do the same thing with either: verify the digest, then
write the bytes or move the staged object, which costs a rename on the
filesystem and a server-side copy on S3, never a read back through the API.
"""

from __future__ import annotations

import hashlib

__all__ = ["EMPTY", "Body"]


class Body:
    """``data`` (in memory) or ``key`` (staged in storage), with its size and lowercase hex SHA-256."""

    __slots__ = ("_sha256", "data", "key", "size")

    def __init__(self, data: bytes | None = None, *, key: str | None = None, size: int = 0, sha256: str = "") -> None:
        if (data is None) == (key is None):
            raise ValueError("a body is either in memory or staged")
        self.data = data
        self.key = key
        self.size = len(data) if data is not None else size
        self._sha256 = sha256

    @classmethod
    def staged(cls, key: str, size: int, sha256: str) -> Body:
        return cls(key=key, size=size, sha256=sha256)

    @property
    def sha256(self) -> str:
        if not self._sha256 and self.data is not None:
            self._sha256 = hashlib.sha256(self.data).hexdigest()
        return self._sha256

    def __bool__(self) -> bool:
        """Was anything sent? (An empty body is no body, as API Gateway sends none.)"""
        return self.size > 0

    def __repr__(self) -> str:
        where = f"key={self.key!r}" if self.key is not None else "in memory"
        return f"Body({where}, size={self.size})"


EMPTY = Body(b"")
