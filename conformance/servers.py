"""The registries the conformance suite can run against, each a real process on loopback.

Every server is a context manager that starts the process on a free port with
a throwaway root under the caller's work directory, waits until ``GET /v2/``
answers, yields a :class:`Registry` and stops the process it started (SIGTERM,
then SIGKILL after a grace period). Nothing is shared between runs.

- ``distribution``: CNCF distribution (Debian's ``docker-registry`` 2.8.2), the
  reference the harness was written against; its known failures (no referrers,
  no sha512, no ``OCI-Subject``) are the expected baseline, see the README.
- ``vmregistry-fs``: ``vmregistry serve`` on the filesystem backend.
- ``vmregistry-s3``: ``vmregistry serve`` on LocalStack's S3 (``make localstack``),
  one fresh bucket per run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from loopback.distribution import write_config
from loopback.processes import free_port, stop

__all__ = ["SERVERS", "Registry", "ServerError", "distribution", "vmregistry_fs", "vmregistry_s3"]

START_TIMEOUT = 60.0


class ServerError(RuntimeError):
    """A registry could not be started (not installed, exited early, never ready)."""


@dataclass(frozen=True)
class Registry:
    """A running registry: its name, ``host:port`` (what the suite's OCI_REGISTRY wants) and log."""

    name: str
    address: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _wait_for_v2(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``GET /v2/`` answers 200 (open) or 401 (a token is required: still up)."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"{url}: the server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url + "/v2/", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
            if exc.code == 404:
                raise ServerError(f"{url} is up but does not serve the OCI API: GET /v2/ answered 404") from None
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise ServerError(f"{url}/v2/ did not answer 200 or 401 within {START_TIMEOUT:g} s ({last}):\n{_tail(log)}")


@contextlib.contextmanager
def _running(
    command: list[str], url: str, log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        if url:
            _wait_for_v2(url, process, log)
        yield process
    finally:
        stop(process)


@contextlib.contextmanager
def distribution(work: Path, *, debug: bool = False) -> Iterator[Registry]:
    """Debian's ``docker-registry`` with a fresh root, deletes enabled, no auth."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise ServerError("docker-registry is not installed (apt-get install docker-registry)")
    root = work / "distribution-root"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(work / "distribution.yml", root, port, level="debug" if debug else "info")
    log = work / "distribution.log"
    address = f"127.0.0.1:{port}"
    with _running([binary, "serve", str(config)], f"http://{address}", log):
        yield Registry("distribution", address, log)


def _vmregistry_command() -> list[str]:
    # The console script of the interpreter running us: the work tree's editable install.
    return [str(Path(sys.executable).with_name("vmregistry")), "serve", "-port", "0", "-host", "127.0.0.1"]


@contextlib.contextmanager
def _vmregistry(work: Path, name: str, args: list[str], env: dict[str, str]) -> Iterator[Registry]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ.update(env)
    log = work / f"{name}.log"
    # No auth.pub in the working directory, so the server runs without authentication.
    with _running(_vmregistry_command() + args, "", log, env=environ, cwd=work) as process:
        deadline = time.monotonic() + START_TIMEOUT
        while (found := re.search(r"listening on http://(\S+)", _tail(log))) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"vmregistry serve did not start:\n{_tail(log)}")
            time.sleep(0.05)
        address = found.group(1).rstrip("/")
        _wait_for_v2(f"http://{address}", process, log)
        yield Registry(name, address, log)


@contextlib.contextmanager
def vmregistry_fs(work: Path, *, debug: bool = False) -> Iterator[Registry]:
    """``vmregistry serve`` on the filesystem backend, rooted in the work directory."""
    root = work / "vmregistry-root"
    root.mkdir(parents=True, exist_ok=True)
    with _vmregistry(work, "vmregistry-fs", ["-fs-path", str(root)], {}) as registry:
        yield registry


@contextlib.contextmanager
def vmregistry_s3(work: Path, *, debug: bool = False) -> Iterator[Registry]:
    """``vmregistry serve`` on a fresh bucket of LocalStack's S3, which runs for this registry only."""
    # The tests' LocalStack runner: one way to start it, with signature checks on.
    from tests.localstack import LocalStackUnavailable, new_bucket_name, running_localstack, s3_env

    try:
        with running_localstack(work) as localstack:
            env = s3_env(localstack.endpoint, new_bucket_name("conformance"))
            with _vmregistry(work, "vmregistry-s3", [], env) as registry:
                yield registry
    except LocalStackUnavailable as exc:
        raise ServerError(str(exc)) from exc


SERVERS: dict[str, Callable[..., AbstractContextManager[Registry]]] = {
    "distribution": distribution,
    "vmregistry-fs": vmregistry_fs,
    "vmregistry-s3": vmregistry_s3,
}
