"""What the login tests share: the token server they run against, its users' password, the CLI fed a password."""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from tests.conftest import VMREGISTRY, RunningServer

__all__ = ["LIFETIME", "PASSWORD", "MiB", "TokenServer", "basic", "claims", "cli_with_stdin"]

MiB = 1024 * 1024
PASSWORD = "wonderland"
LIFETIME = 2


@dataclass
class TokenServer:
    server: RunningServer
    users: Path

    @property
    def registry(self) -> str:
        return self.server.url.removeprefix("http://")

    @property
    def realm(self) -> str:
        return self.server.url + "/auth/token"


def cli_with_stdin(
    cwd: Path, stdin: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``vmregistry *args`` with ``stdin``, in ``cwd``, away from the user's caches, logins and docker config."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ |= {"VMREGISTRY_CACHE_DIR": str(cwd / "cli-cache"), "DOCKER_CONFIG": str(cwd / "no-docker")}
    environ.setdefault("VMREGISTRY_CREDENTIALS", str(cwd / "no-credentials.json"))
    environ.update(env or {})
    return subprocess.run(
        [VMREGISTRY, *args], cwd=cwd, env=environ, input=stdin, capture_output=True, text=True, timeout=120
    )


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
