"""The digests a manifest may name: ``sha256`` and ``sha512``, lowercase hex of exact length.

A local stand-in for the shared digest module the restructuring brings
(``vmregistry/digests.py``); only :func:`is_digest` and :func:`compute` are used
here, so the swap is two imports.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["ALGORITHMS", "compute", "is_digest"]

ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256):([a-f0-9]{64})|(sha512):([a-f0-9]{128})")


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST_RE.fullmatch(value) is not None


def compute(algorithm: str, data: bytes) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
