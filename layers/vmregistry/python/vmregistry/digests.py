"""Content digests: the algorithms the registry accepts, their grammar, and hashing.

A digest is ``<algorithm>:<lowercase hex>`` (OCI image-spec "Digests"):
``sha256`` (64 hex characters, the canonical algorithm) and ``sha512`` (128).
Every place that builds, splits or computes a digest goes through here, so an
algorithm is added in :data:`ALGORITHMS` and nowhere else.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = ["ALGORITHMS", "CANONICAL", "EMPTY_SHA256", "Digest", "digest_of", "hasher", "is_digest", "split"]

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
"""Algorithm -> length of its hex encoding."""

CANONICAL = "sha256"
"""What the registry computes when the client names no algorithm (manifests, blobs it hashes itself)."""

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
"""The SHA-256 of no bytes (an empty blob's upload has no parts to hash)."""

_DIGEST_RE = re.compile(r"(sha256):([a-f0-9]{64})|(sha512):([a-f0-9]{128})")


class Digest(NamedTuple):
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def split(text: str) -> Digest | None:
    """``"sha256:<hex>"`` as its parts, or ``None`` if it is not a digest of an accepted algorithm."""
    found = _DIGEST_RE.fullmatch(text)
    if found is None:
        return None
    algorithm, hex_digest = (found.group(1), found.group(2)) if found.group(1) else (found.group(3), found.group(4))
    return Digest(algorithm, hex_digest)


def is_digest(text: str, algorithms: tuple[str, ...] = tuple(ALGORITHMS)) -> bool:
    parsed = split(text)
    return parsed is not None and parsed.algorithm in algorithms


def hasher(algorithm: str = CANONICAL) -> _Hash:
    """A fresh hashlib object for ``algorithm`` (one of :data:`ALGORITHMS`)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def digest_of(data: bytes, algorithm: str = CANONICAL) -> str:
    """The digest of ``data`` in the given algorithm, as ``<algorithm>:<hex>``."""
    digest = hasher(algorithm)
    digest.update(data)
    return f"{algorithm}:{digest.hexdigest()}"
