"""The two registries under test, each a real process on loopback with a throwaway root.

distribution runs with the configuration Debian ships (filesystem driver,
in-memory blob descriptor cache) minus auth; vmregistry with the filesystem
backend and its local data plane, its workers as the caller says (distribution's
Go runtime uses every core). Both keep their default logging
(distribution: every request at ``info`` plus an access log; vmregistry: one
JSON line per request), to files in the work directory, so neither pays for
a terminal. Each server is stopped with
SIGTERM (SIGKILL after a grace period) by the process id this module started.

The S3-mode sections run vmregistry on LocalStack's S3 (:func:`local_s3`,
the tests' runner); where it cannot run, a section reports itself skipped
(:class:`Unavailable`) instead of failing the whole run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loopback.distribution import write_config
from loopback.processes import free_port, stop

__all__ = [
    "DISTRIBUTION",
    "LocalS3",
    "Server",
    "Unavailable",
    "distribution_version",
    "local_s3",
    "start_distribution",
    "start_vmregistry",
]

DISTRIBUTION = "docker-registry"
START_TIMEOUT = 30.0


@dataclass
class Server:
    """A running registry: where to reach it, its API prefix and its process."""

    name: str
    url: str
    api: str
    """Path prefix of the API: ``/v2`` (distribution) or ``/v1`` (vmregistry)."""
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def status_field(self, name: str) -> int:
        """A ``kB`` field of ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``), in bytes."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(name)

    def stop(self) -> None:
        stop(self.process)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited early:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{url}: server did not become ready:\n{log.read_text()[-2000:]}")


def distribution_version() -> str | None:
    if shutil.which(DISTRIBUTION) is None:
        return None
    out = subprocess.run([DISTRIBUTION, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def start_distribution(work: Path) -> Server:
    """CNCF distribution (Debian's ``docker-registry``) with a fresh root and config, no auth."""
    root = work / "distribution-root"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(work / "distribution.yml", root, port, redirect=False)
    log = work / "distribution.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([DISTRIBUTION, "serve", str(config)], stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url + "/v2/", process, log)
    return Server("distribution", url, "/v2", root, process, log)


def start_vmregistry(work: Path, env: dict[str, str] | None = None, *args: str, workers: int | None = None) -> Server:
    """``vmregistry serve`` from this venv, filesystem backend unless ``args`` say otherwise.

    ``workers`` is ``-workers``; unset, serve's default (one process per CPU).
    """
    root = work / "vmregistry-root"
    log = work / f"vmregistry-{time.monotonic_ns()}.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ.update(env or {})
    command = [str(Path(sys.executable).with_name("vmregistry")), "serve", "-port", "0"]
    command += list(args) or ["-fs-path", str(root)]
    if workers is not None:
        command += ["-workers", str(workers)]
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environ, cwd=work)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        found = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
        if found:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"vmregistry serve did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    url = found.group(1)
    _wait_ready(url + "/v1/", process, log)
    return Server("vmregistry", url, "/v1", root, process, log)


class Unavailable(Exception):
    """What a section needs cannot run on this machine: it is reported as skipped, for this reason."""


@dataclass(frozen=True)
class LocalS3:
    """LocalStack's S3, running for one section."""

    endpoint: str

    def env(self, prefix: str) -> dict[str, str]:
        """``VMREGISTRY_*`` for ``vmregistry serve -storage s3`` on a fresh bucket named from ``prefix``."""
        from tests.localstack import new_bucket_name, s3_env

        return s3_env(self.endpoint, new_bucket_name(prefix))


@contextmanager
def local_s3(home: Path) -> Iterator[LocalS3]:
    """LocalStack's S3 started in ``home`` (made if missing); :class:`Unavailable` if it cannot run here."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        from tests.localstack import LocalStackUnavailable, running_localstack
    except ImportError as exc:
        raise Unavailable(f"tests/localstack.py is not importable: {exc}") from exc
    try:
        with running_localstack(home) as localstack:
            yield LocalS3(localstack.endpoint)
    except LocalStackUnavailable as exc:
        raise Unavailable(str(exc).splitlines()[0]) from exc
