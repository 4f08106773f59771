"""The local server caps glibc's malloc arenas (local/malloc.py), unless the operator set the cap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"


def _limit_arenas_in_a_fresh_interpreter(**env: str) -> str:
    """What ``limit_arenas()`` answers in a new process (this one's malloc stays as pytest set it)."""
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    code = "from vmregistry.local.malloc import limit_arenas; print(limit_arenas())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt's arena cap is glibc's")
def test_the_cap_is_set_on_glibc() -> None:
    # GIVEN no MALLOC_ARENA_MAX of the operator's
    # THEN glibc takes the cap
    assert _limit_arenas_in_a_fresh_interpreter() == "True"


def test_an_operators_malloc_arena_max_wins() -> None:
    # GIVEN an operator who set MALLOC_ARENA_MAX for the process
    # THEN the server leaves glibc's setting alone
    assert _limit_arenas_in_a_fresh_interpreter(MALLOC_ARENA_MAX="4") == "False"
