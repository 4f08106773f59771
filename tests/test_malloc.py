"""The local server caps glibc's malloc arenas (local/malloc.py), unless the operator set the cap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from vmregistry.local.malloc import limit_arenas

GLIBC = platform.libc_ver()[0] == "glibc"


def _in_a_fresh_interpreter(env: dict[str, str]) -> str:
    code = "from vmregistry.local.malloc import limit_arenas; print(limit_arenas())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt's arena cap is glibc's")
def test_the_cap_is_set_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no MALLOC_ARENA_MAX of the operator's
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    # THEN glibc takes the cap
    assert limit_arenas() is True


def test_an_operators_malloc_arena_max_wins() -> None:
    # GIVEN an operator who set MALLOC_ARENA_MAX for the process
    env = {**os.environ, "MALLOC_ARENA_MAX": "4"}
    # THEN the server leaves glibc's setting alone
    assert _in_a_fresh_interpreter(env) == "False"
