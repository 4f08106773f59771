"""The ``Range`` header, as S3 honours it: one ``bytes=`` range per request."""

from __future__ import annotations

import re

from vmregistry.errors import RegistryError

__all__ = ["parse_range"]

_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` a ``Range`` header asks for, or ``None`` for the whole object.

    Malformed or multi-range headers are ignored, as RFC 9110 allows (the whole
    object is served); a well-formed range that misses the object is RANGE_INVALID.
    """
    if not header:
        return None
    found = _RANGE_RE.fullmatch(header.strip())
    if found is None or (not found.group(1) and not found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError("RANGE_INVALID", detail={"size": size}, headers={"Content-Range": f"bytes */{size}"})
