"""MiniStack as a host process: installed in its own venv, started on a loopback port, stopped.

Why MiniStack (PyPI ``ministack``, MIT): it runs Python Lambda functions as
host processes (no Docker engine), serves API Gateway REST APIs with Lambda
proxy integrations, enforces REQUEST authorizers and, with ``AUTH=true``, IAM:
every function's role, every bucket policy, every presigned URL's signature.
Community LocalStack needs Docker to run functions and does not enforce
authorizers, so it stays the S3 of the local-mode tests (``tests/localstack.py``).

Its settings here, and why:

* ``AUTH=true``: IAM is enforced, so a function whose role lacks a grant fails
  as it would in AWS, and anonymous requests to the bucket are refused.
* ``USE_SSL=1`` with the certificate of :mod:`emulator.tls`: the bucket policy
  denies requests without TLS, as AWS would.
* ``BIND_HOST=127.0.0.1``, a free port, ``TMPDIR`` in the state folder (where
  it unpacks functions), a clean environment: nothing leaks in from the shell.

The venv's interpreter also runs the functions (through
:mod:`emulator.lambda_launcher`), so it must be the runtime's Python version.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from emulator import tls
from loopback.processes import free_port

__all__ = [
    "MINISTACK_PYTHON",
    "MINISTACK_VERSION",
    "REGION",
    "ROOT",
    "ROOT_KEY",
    "Emulator",
    "EmulatorUnavailable",
    "start",
    "stop",
]

ROOT = Path(__file__).resolve().parent.parent
MINISTACK_PYTHON = ROOT / ".ministack-venv" / "bin" / "python"
MINISTACK_VERSION = "1.5.33"
"""The version the gaps in docs/deploy.md were measured on; ``make ministack`` installs it."""
ACCOUNT = "000000000000"
REGION = "us-east-1"
ROOT_KEY = "test"
"""The emulator's root access key id and secret under ``AUTH=true``."""
START_TIMEOUT = 60.0
STOP_GRACE = 10.0
PID_FILE = "ministack.pid"


class EmulatorUnavailable(RuntimeError):
    """MiniStack is not installed, is the wrong version, or did not start."""


@dataclass(frozen=True)
class Emulator:
    """A running MiniStack: its endpoint, the CA that vouches for it, and where it keeps its files."""

    endpoint: str
    pid: int
    state: Path
    ca: Path
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)
    """Set in the process that started it (which then reaps it when stopping)."""

    def stop(self) -> bool:
        return stop(self.state, self.process)

    @property
    def log(self) -> Path:
        return self.state / "ministack.log"

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on this emulator, as its root account, trusting its CA."""
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            verify=str(self.ca),
            region_name=REGION,
            aws_access_key_id=ROOT_KEY,
            aws_secret_access_key=ROOT_KEY,
        )

    def aws_environment(self) -> dict[str, str]:
        """What an AWS SDK or the CDK CLI needs to talk to this emulator and nothing else."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_S3_FORCE_PATH_STYLE": "1",
            "AWS_ACCESS_KEY_ID": ROOT_KEY,
            "AWS_SECRET_ACCESS_KEY": ROOT_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CA_BUNDLE": str(self.ca),
            "NODE_EXTRA_CA_CERTS": str(self.ca),
        }


def _check_installed() -> None:
    if not MINISTACK_PYTHON.exists():
        raise EmulatorUnavailable(f"{MINISTACK_PYTHON} is missing: run `make ministack` (make test installs it)")
    probe = subprocess.run(
        [
            str(MINISTACK_PYTHON),
            "-c",
            "import importlib.metadata as m, sys; print(m.version('ministack'), *sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise EmulatorUnavailable(f"{MINISTACK_PYTHON} cannot import ministack: {probe.stderr.strip()}")
    version, major, minor = probe.stdout.split()
    if version != MINISTACK_VERSION:
        raise EmulatorUnavailable(f"MiniStack {version} is installed, {MINISTACK_VERSION} is pinned: `make ministack`")
    from infra.config import PYTHON_VERSION

    if f"{major}.{minor}" != PYTHON_VERSION:
        raise EmulatorUnavailable(
            f"{MINISTACK_PYTHON} is Python {major}.{minor}; it also runs the functions, which need {PYTHON_VERSION}"
        )


def _healthy(endpoint: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/_ministack/health", timeout=2, context=context) as response:
            services = json.loads(response.read()).get("services", {})
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return bool(services)


def start(state: Path, port: int | None = None) -> Emulator:
    """Start MiniStack with the bridges of :mod:`emulator.ministack_main`; wait until it answers."""
    _check_installed()
    state.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    files = tls.issue(state / "tls")
    endpoint = f"https://127.0.0.1:{port}"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(state)),
        "LANG": "C.UTF-8",
        "GATEWAY_PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "AUTH": "true",
        "USE_SSL": "1",
        "MINISTACK_SSL_CERT": str(files.chain),
        "MINISTACK_SSL_KEY": str(files.key),
        "MINISTACK_ACCOUNT_ID": ACCOUNT,
        "MINISTACK_REGION": REGION,
        "TMPDIR": str(state),
        "LOG_LEVEL": "INFO",
        "VMREGISTRY_EMULATOR_STATE": str(state),
    }
    log = state / "ministack.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            # -P: its folder must not shadow the standard library (emulator/ has modules of its own)
            [str(MINISTACK_PYTHON), "-P", str(Path(__file__).with_name("ministack_main.py"))],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            cwd=state,
            start_new_session=True,  # its own process group: stop() ends the functions it started too
        )
    (state / PID_FILE).write_text(str(process.pid))
    emulator = Emulator(endpoint, process.pid, state, files.ca, process)
    context = emulator.ssl_context()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _healthy(endpoint, context):
            return emulator
        if process.poll() is not None:
            raise EmulatorUnavailable(f"MiniStack exited with {process.returncode}:\n{emulator.logs()[-4000:]}")
        time.sleep(0.2)
    emulator.stop()
    raise EmulatorUnavailable(f"MiniStack did not answer within {START_TIMEOUT:g} s:\n{emulator.logs()[-4000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(state: Path, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Stop the MiniStack whose pid file is in ``state``, and every function it started.

    SIGTERM to its process group (the functions are its children), SIGKILL after
    :data:`STOP_GRACE` seconds. ``process`` is its ``Popen`` when this process started
    it, to reap it. Returns whether one was running.
    """
    pid_file = state / PID_FILE
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    running = _alive(pid)
    if running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while _alive(pid) and (process is None or process.poll() is None) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if process is not None:
        process.wait()
    pid_file.unlink()
    # Each function's unpacked code and layers (~65 MB apiece): MiniStack leaves them behind.
    for scratch in state.glob("ministack-lambda-*"):
        shutil.rmtree(scratch, ignore_errors=True)
    return running
