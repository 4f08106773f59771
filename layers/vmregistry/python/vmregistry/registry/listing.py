"""Pagination of sorted name listings (``?n=`` and ``?last=``), as the distribution spec defines it.

A page is read lazily from a sorted key range (``Storage.list(prefix,
start_after=...)``): the walk starts after ``last`` and stops one item past
the page (to know whether a next page exists), so a page costs the page, not
the registry (issue 17).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from vmregistry.errors import RegistryError

__all__ = ["MAX_PAGE_SIZE", "Page", "page_of", "parse_page_size"]

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


def page_of(names: Iterable[str], n: int | None, keep: Callable[[str], bool] = lambda _: True) -> Page:
    """The first ``n`` (default and at most :data:`MAX_PAGE_SIZE`) names that ``keep`` accepts.

    ``names`` must already be sorted and start after the client's ``last``; it is
    consumed only until the page is full and one more name proves a next page.
    """
    limit = MAX_PAGE_SIZE if n is None else n
    items: list[str] = []
    iterator: Iterator[str] = iter(names)
    for name in iterator:
        if not keep(name):
            continue
        if len(items) == limit:
            return Page(items, items[-1] if items else None)
        items.append(name)
    return Page(items, None)
