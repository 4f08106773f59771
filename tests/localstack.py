"""LocalStack's S3 as a host process: the real S3 the tests run against.

Why a process and not a library fake: only LocalStack (with signature
validation switched on) behaves like S3 where it matters to us: tampered or
expired presigned URLs are refused, a signed ``x-amz-checksum-sha256`` is
enforced, multipart with presigned part URLs works (see
``../shared/ENVIRONMENT.md``). There is no Docker engine here, so the runtime
from ``localstack-core`` runs on the host, in its own virtual environment
(``make localstack`` creates ``.localstack-venv``), bound to a free loopback
port with its own data directory.

The whole test session shares one LocalStack; each test that needs isolation
takes a fresh bucket (:func:`new_bucket_name`). If the virtual environment is
missing, the S3 tests are skipped with a message that says how to get it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loopback.processes import free_port
from loopback.processes import stop as stop_process

__all__ = [
    "ACCESS_KEY",
    "LOCALSTACK_PYTHON",
    "REGION",
    "SECRET_KEY",
    "LocalStack",
    "LocalStackUnavailable",
    "new_bucket_name",
    "running_localstack",
    "s3_env",
    "start",
    "stop",
]

ROOT = Path(__file__).resolve().parent.parent
LOCALSTACK_PYTHON = ROOT / ".localstack-venv" / "bin" / "python"
ACCESS_KEY = "test"
SECRET_KEY = "test"  # LocalStack's fixed secret for any key id
REGION = "us-east-1"
START_TIMEOUT = 90.0
STOP_GRACE = 10.0


class LocalStackUnavailable(RuntimeError):
    """LocalStack is not installed or did not become healthy."""


@dataclass(frozen=True)
class LocalStack:
    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/_localstack/health", timeout=2) as response:
            services = json.loads(response.read()).get("services", {})
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return bool(services.get("s3") == "running")


def stop(localstack: LocalStack) -> None:
    """SIGTERM, then SIGKILL if it is still alive after :data:`STOP_GRACE` (it has been seen ignoring SIGTERM)."""
    process = localstack.process
    if process.poll() is not None:
        return
    # SIGTERM to the runtime alone: it shuts its services down in about a second. Signalling
    # the whole group at once stalls that shutdown until the SIGKILL.
    stop_process(process, STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):  # anything it left behind in its group
        os.killpg(process.pid, signal.SIGKILL)


def start(workdir: Path) -> LocalStack:
    """Start LocalStack's S3 on a free loopback port and wait for its health check."""
    if not LOCALSTACK_PYTHON.exists():
        raise LocalStackUnavailable(
            f"{LOCALSTACK_PYTHON} is missing: run `make localstack` (or `make test`, which installs it)"
        )
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    volume = workdir / "volume"
    volume.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VMREGISTRY_", "LOCALSTACK_"))}
    environ.update(
        {
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            # The default server binds 0.0.0.0 whatever GATEWAY_LISTEN says.
            "GATEWAY_SERVER": "hypercorn",
            "SERVICES": "s3",
            # Load S3 at start, not on the first request (which then takes ~15 s on a busy machine).
            "EAGER_SERVICE_LOADING": "1",
            # Off by default in LocalStack: the point of using it is that it checks signatures.
            "S3_SKIP_SIGNATURE_VALIDATION": "0",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "LOCALSTACK_VOLUME_DIR": str(volume),
            # Host mode with every directory below ours: otherwise, inside a container,
            # LocalStack believes it is in its own image and writes to /var/lib/localstack.
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(volume / "filesystem"),
        }
    )
    log = workdir / "localstack.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=workdir,
            start_new_session=True,  # its own process group: stop() signals every child too
        )
    running = LocalStack(endpoint, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _healthy(endpoint):
            return running
        if process.poll() is not None:
            raise LocalStackUnavailable(f"LocalStack exited with {process.returncode}:\n{running.logs()[-4000:]}")
        time.sleep(0.2)
    stop(running)
    raise LocalStackUnavailable(f"LocalStack was not healthy after {START_TIMEOUT:g} s:\n{running.logs()[-4000:]}")


@contextlib.contextmanager
def running_localstack(workdir: Path) -> Iterator[LocalStack]:
    localstack = start(workdir)
    try:
        yield localstack
    finally:
        stop(localstack)


def new_bucket_name(prefix: str = "vmr") -> str:
    """A bucket name no other test uses (S3 names: 3-63 lowercase letters, digits, dashes)."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The ``VMREGISTRY_*`` variables that point a registry at ``bucket`` on ``endpoint``."""
    return {
        "VMREGISTRY_STORAGE": "s3",
        "VMREGISTRY_S3_BUCKET": bucket,
        "VMREGISTRY_S3_ENDPOINT": endpoint,
        "VMREGISTRY_S3_REGION": REGION,
        "VMREGISTRY_S3_ACCESS_KEY": ACCESS_KEY,
        "VMREGISTRY_S3_SECRET_KEY": SECRET_KEY,
    }
