"""Storage keys: their grammar, and the wrappers through which the contract checks every key a backend gets.

:class:`~vmregistry.storage.base.Storage` installs the wrappers on each backend
class (:func:`install_key_checks`), so a key outside the grammar raises
:class:`InvalidKey` before any backend code runs, whichever method it reaches.
"""

from __future__ import annotations

import builtins
import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "KEY_COMPONENT",
    "MAX_KEY_LENGTH",
    "InvalidKey",
    "StorageError",
    "check_key",
    "check_prefix",
    "install_key_checks",
]


class StorageError(Exception):
    """Base of every error a backend raises."""


class InvalidKey(StorageError, ValueError):
    """A key outside the grammar: a bug in the caller (keys come from :mod:`vmregistry.paths`), never stored."""


KEY_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:!-]*")
"""One component of a key: no dot first (no ``.``, ``..`` or hidden file), no separator, nothing outside
ASCII. ``!`` ends catalog entries (:mod:`vmregistry.paths`); ``:`` only appears in keys of the first
layout (``manifests/<name>/sha256:<hex>/...``), which ``vmregistry reindex`` reads to migrate them."""
_PARTIAL_COMPONENT = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.:!-]*)?")
MAX_KEY_LENGTH = 1024
"""S3's limit, in bytes (keys are ASCII)."""


def check_key(key: str) -> str:
    """``key`` if it is well formed; :class:`InvalidKey` otherwise."""
    if not key or len(key) > MAX_KEY_LENGTH or any(KEY_COMPONENT.fullmatch(c) is None for c in key.split("/")):
        raise InvalidKey(f"invalid storage key {key[:200]!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: whole components, then possibly the start of one (``catalog/te``), or nothing."""
    *whole, partial = prefix.split("/")
    if (
        len(prefix) > MAX_KEY_LENGTH
        or any(KEY_COMPONENT.fullmatch(c) is None for c in whole)
        or _PARTIAL_COMPONENT.fullmatch(partial) is None
    ):
        raise InvalidKey(f"invalid storage prefix {prefix[:200]!r}")
    return prefix


_F = TypeVar("_F", bound=Callable[..., Any])

_KEYED = (
    "stat",
    "read",
    "open",
    "write",
    "delete",
    "presign_get",
    "presign_put",
    "marker",
    "multipart_create",
    "multipart_put_part",
    "multipart_presign_part",
    "multipart_list_parts",
    "multipart_complete",
    "multipart_abort",
    "multipart_zero_part",
    "receive",
)
"""Methods whose first argument is a key."""


def _checking_key(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        return method(self, check_key(key), *args, **kwargs)

    return checked  # type: ignore[return-value]


def _checking_move(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Any, source: str, destination: str) -> Any:
        return method(self, check_key(source), check_key(destination))

    return checked  # type: ignore[return-value]


def _checking_many(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Any, keys: builtins.list[str]) -> Any:
        return method(self, [check_key(key) for key in keys])

    return checked  # type: ignore[return-value]


def _checking_list(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Any, prefix: str, *, start_after: str | None = None, page_size: int | None = None) -> Any:
        if start_after is not None:
            check_prefix(start_after)
        return method(self, check_prefix(prefix), start_after=start_after, page_size=page_size)

    return checked  # type: ignore[return-value]


def _checking_part_move(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Any, key: str, upload_id: str, number: int, source: str, **kwargs: Any) -> Any:
        return method(self, check_key(key), upload_id, number, check_key(source), **kwargs)

    return checked  # type: ignore[return-value]


def _checking_uploads(method: _F) -> _F:
    @functools.wraps(method)
    def checked(self: Any, prefix: str) -> Any:
        return method(self, check_prefix(prefix))

    return checked  # type: ignore[return-value]


def install_key_checks(cls: type) -> None:
    """Wrap every keyed method ``cls`` itself defines so that it checks its keys first."""
    for attribute in _KEYED:
        if attribute in cls.__dict__:
            setattr(cls, attribute, _checking_key(cls.__dict__[attribute]))
    for attribute, wrapper in (
        ("move", _checking_move),
        ("list", _checking_list),
        ("scan", _checking_list),
        ("delete_many", _checking_many),
        ("multipart_move_part", _checking_part_move),
        ("multipart_list_uploads", _checking_uploads),
    ):
        if attribute in cls.__dict__:
            setattr(cls, attribute, wrapper(cls.__dict__[attribute]))
