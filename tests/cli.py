"""The ``vmregistry`` command run as a user runs it: a real process, isolated from this machine's settings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import VMREGISTRY

__all__ = ["mint", "run_vmregistry"]


def run_vmregistry(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``vmregistry ARGS`` in ``cwd``, with no ``VMREGISTRY_*`` from the caller and no shared cache or credentials."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ["VMREGISTRY_CACHE_DIR"] = str(cwd / "cli-cache")
    environ["VMREGISTRY_CREDENTIALS"] = str(cwd / "no-credentials.json")
    environ.update(env or {})
    return subprocess.run([VMREGISTRY, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def mint(keys: Path, *scopes: str) -> str:
    """A token for ``scopes``, from ``vmregistry token`` with the Auth Server key kept in ``keys``."""
    args = [arg for scope in scopes for arg in ("-scope", scope)]
    minted = run_vmregistry("token", "-key", str(keys / "auth.key"), *args, cwd=keys)
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()
