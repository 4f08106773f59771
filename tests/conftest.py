"""Fixtures shared by every test module: real servers on loopback ports, real storage."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from vmregistry import runtime

from loopback.processes import stop
from tests import localstack as localstack_process
from tests.httpclient import request
from tests.localstack import LocalStack, new_bucket_name, s3_env

ROOT = Path(__file__).resolve().parent.parent
VMREGISTRY = str(Path(sys.executable).with_name("vmregistry"))


@dataclass
class RunningServer:
    url: str
    storage: Path
    process: subprocess.Popen[str]
    log: Path

    def logs(self) -> str:
        return self.log.read_text()


def start_server(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    storage: Path | None = None,
    prefix: tuple[str, ...] = (),
) -> RunningServer:
    """Start ``vmregistry serve`` as a real process on a free loopback port (``prefix``: a command that execs it)."""
    storage = storage or tmp / "storage"
    log = tmp / f"server-{time.monotonic_ns()}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ.update(env or {})
    with open(log, "w") as handle:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [*prefix, VMREGISTRY, "serve", "-port", "0", "-fs-path", str(storage), *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            env=environ,
            cwd=tmp,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found:
            return RunningServer(found.group(1), storage, process, log)
        if process.poll() is not None:
            raise RuntimeError(f"vmregistry serve exited early:\n{log.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"vmregistry serve did not start:\n{log.read_text()}")


def stop_server(server: RunningServer) -> None:
    stop(server.process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A filesystem-backed local registry, shared by the tests of one module."""
    running = start_server(tmp_path_factory.mktemp("server"))
    assert request("GET", running.url + "/v1/").status == 200
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """LocalStack's S3 with signature validation on, one per session (``make localstack`` installs it)."""
    if not localstack_process.LOCALSTACK_PYTHON.exists():
        pytest.skip(f"{localstack_process.LOCALSTACK_PYTHON} is missing: run `make localstack`")
    running = localstack_process.start(tmp_path_factory.mktemp("localstack"))
    try:
        yield running
    finally:
        localstack_process.stop(running)


@pytest.fixture
def s3_settings(localstack: LocalStack) -> dict[str, str]:
    """``VMREGISTRY_*`` variables for a fresh, not yet created bucket on LocalStack."""
    return s3_env(localstack.endpoint, new_bucket_name())


@pytest.fixture(scope="module")
def s3_server(localstack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``vmregistry serve -storage s3`` on its own bucket in LocalStack, shared by one module's tests."""
    running = start_server(tmp_path_factory.mktemp("s3-server"), env=s3_env(localstack.endpoint, new_bucket_name()))
    assert request("GET", running.url + "/v1/").status == 200
    yield running
    stop_server(running)


@pytest.fixture
def isolated_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The reference client sees no token, login, cache or docker config of the person running the tests."""
    monkeypatch.delenv("VMREGISTRY_TOKEN", raising=False)
    monkeypatch.setenv("VMREGISTRY_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    monkeypatch.setenv("VMREGISTRY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    """Each test starts as a new Lambda execution environment: settings and registry built anew."""
    runtime.reset()
    yield
    runtime.reset()
