"""A SHA-256 whose state can be saved and carried on by another process: OpenSSL's ``SHA256_CTX`` through ctypes.

hashlib objects cannot be saved, and the local server's workers share nothing
in memory, so a digest computed as an upload's parts land (each landing in
whichever worker took its request) must live on disk between parts.
OpenSSL's low-level ``SHA256_Init/Update/Final`` keep their whole state in a
112-byte struct of plain integers: saved as bytes, it continues in any
process of the same machine. The library's version string goes with the
state, so a state saved by another OpenSSL is never trusted; callers verify
the result against the digest they expect and hash from scratch on a
mismatch anyway (:mod:`vmregistry.storage.inplace`). Where libcrypto or its
SHA-256 functions cannot be found, :func:`available` is false and callers do
without. ctypes releases the GIL during each call, so hashing runs beside
the server's other threads as hashlib's does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["ResumableSHA256", "available"]


class _Context(ctypes.Structure):
    """``SHA256_CTX`` (openssl/sha.h): unchanged since OpenSSL 0.9.8."""

    _fields_ = (
        ("h", ctypes.c_uint32 * 8),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint32 * 16),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    )


@functools.cache
def _library() -> tuple[Any, str] | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        for function in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
            getattr(library, function).restype = ctypes.c_int
        library.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        library.OpenSSL_version.restype = ctypes.c_char_p
        version = library.OpenSSL_version(0).decode("ascii", "replace")
    except (OSError, AttributeError):
        return None
    return library, version


def available() -> bool:
    return _library() is not None


class ResumableSHA256:
    """hashlib's ``update``/``hexdigest``, plus :meth:`save` and a constructor from a saved state."""

    def __init__(self, saved: str | None = None) -> None:
        found = _library()
        if found is None:
            raise RuntimeError("libcrypto's SHA-256 is not available here")
        self._library, version = found
        self._context = _Context()
        if saved is None:
            self._library.SHA256_Init(ctypes.byref(self._context))
            return
        origin, _, state = saved.partition("|")
        raw = bytes.fromhex(state)
        if origin != version or len(raw) != ctypes.sizeof(_Context):
            raise ValueError("the saved SHA-256 state comes from another library")
        self._context = _Context.from_buffer_copy(raw)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if not view.nbytes:
            return
        if view.readonly:
            buffer: Any = ctypes.c_char_p(bytes(view))
        else:
            buffer = (ctypes.c_char * view.nbytes).from_buffer(view)
        self._library.SHA256_Update(ctypes.byref(self._context), buffer, view.nbytes)

    def save(self) -> str:
        """The state, to carry on with ``ResumableSHA256(saved)`` (in any process using the same library)."""
        return f"{_library()[1]}|{bytes(self._context).hex()}"  # type: ignore[index]

    def hexdigest(self) -> str:
        final = _Context.from_buffer_copy(bytes(self._context))  # finishing does not end this one
        out = (ctypes.c_ubyte * 32)()
        self._library.SHA256_Final(out, ctypes.byref(final))
        return bytes(out).hex()
