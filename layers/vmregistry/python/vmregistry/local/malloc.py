"""Two malloc arenas for the local server, so a request's freed buffers serve the next request.

The server answers each request on a thread of its own (``ThreadingHTTPServer``),
and glibc gives threads arenas of their own, up to eight per core. Streamed
bodies go through buffers of a few MiB (a part being read, one being sent), and
what a request frees stays resident in its arena: the next request, on another
thread and arena, allocates afresh. The server's resident set then grows by
buffers per arena rather than staying at one request's worth. Under the GIL
more arenas buy no parallelism, so two is what Python servers commonly set
(``MALLOC_ARENA_MAX=2``); an operator's own ``MALLOC_ARENA_MAX`` wins.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["ARENAS", "limit_arenas"]

ARENAS = 2
_M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number (malloc.h)."""


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``count``; False where libc is not glibc or the operator set it."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))
