"""Pagination of sorted name lists (``?n=`` and ``?last=``), as the distribution spec defines it."""

from __future__ import annotations

import bisect
from typing import NamedTuple

from vmregistry.errors import RegistryError

__all__ = ["MAX_PAGE_SIZE", "Page", "paginate", "parse_page_size"]

MAX_PAGE_SIZE = 1000


class Page(NamedTuple):
    items: list[str]
    next_last: str | None
    """The ``last`` value of the next page, or ``None`` on the final page."""


def parse_page_size(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit():
        raise RegistryError("PAGINATION_NUMBER_INVALID", "n must be a non-negative integer", {"n": raw[:50]})
    return min(int(raw), MAX_PAGE_SIZE)


def paginate(items: list[str], n: int | None, last: str | None) -> Page:
    """The items after ``last`` (exclusive), at most ``n`` of them. ``items`` must be sorted."""
    start = bisect.bisect_right(items, last) if last else 0
    limit = MAX_PAGE_SIZE if n is None else n
    page = items[start : start + limit]
    more = start + limit < len(items) and limit > 0
    return Page(page, page[-1] if more and page else None)
