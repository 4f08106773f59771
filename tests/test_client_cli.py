"""The rough edges a new user meets on the command line (issue 12 §5), each as the user would meet it.

Every test runs the real ``vmregistry`` command against a real server (or a
real wrong one: a web server answering HTML on the port the user typed).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmregistry.client import (
    Progress,
    PushOptions,
    RegistryClient,
    TransientError,
    push_image,
)

from tests.cli import run_vmregistry
from tests.conftest import VMREGISTRY, RunningServer
from tests.stubserver import Answer, serving

MiB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("isolated_client")


def test_a_reference_without_a_registry_host_says_so_at_once(tmp_path: Path) -> None:
    # WHEN the user forgets the registry
    started = time.monotonic()
    pulled = run_vmregistry("pull", "team/ubuntu:24.04", cwd=tmp_path)

    # THEN the CLI says what is missing, as a usage error, without trying to resolve "team"
    assert pulled.returncode == 2
    assert time.monotonic() - started < 5
    assert "needs a registry host" in pulled.stderr
    assert "localhost:8080/team/ubuntu:24.04" in pulled.stderr


@pytest.fixture
def html_port() -> Iterator[int]:
    """A web server that answers every request with an HTML page (404 for /v1/..., 200 elsewhere)."""

    def answer(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        page = b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1>" + b"x" * 2000 + b"</body></html>"
        return 404 if "tags" in target else 200, [("Content-Type", "text/html; charset=utf-8")], page

    with serving(answer) as port:
        yield port


def test_a_port_that_serves_html_is_named_not_printed(html_port: int, tmp_path: Path) -> None:
    # WHEN the user points the CLI at a web server instead of the registry (an error page, then a 200 page)
    listed = run_vmregistry("tags", f"127.0.0.1:{html_port}/team/app", "-retries", "0", cwd=tmp_path)
    catalog = run_vmregistry("catalog", f"127.0.0.1:{html_port}", "-retries", "0", cwd=tmp_path)

    # THEN neither prints the page; both say it is not the registry's answer and what to check
    for done in (listed, catalog):
        assert done.returncode == 1
        assert "<html" not in done.stderr.lower()
        assert "Welcome to nginx" not in done.stderr
        assert "address and port" in done.stderr
    assert "answered with an HTML page" in listed.stderr
    assert "text/html" in catalog.stderr


@pytest.mark.parametrize("command", ["tags", "catalog", "inspect", "rm"])
def test_every_client_command_explains_itself(command: str, tmp_path: Path) -> None:
    helped = run_vmregistry(command, "-h", cwd=tmp_path)
    assert helped.returncode == 0
    # Between the usage lines and the argument list there is a description of what the command does.
    description = helped.stdout.split("\n\n")[1]
    assert not description.startswith(("positional arguments", "options"))
    assert len(description.split()) >= 10


def test_flags_take_one_dash_or_two(server: RunningServer, tmp_path: Path) -> None:
    registry = server.url.removeprefix("http://")
    (tmp_path / "disk.img").write_bytes(os.urandom(6 * MiB))

    # WHEN push takes serve-style single-dash flags and pull the usual double-dash ones (and -o)
    pushed = run_vmregistry(
        "push",
        f"{registry}/cli/dashes:v1",
        "-disk",
        "disk.img",
        "-part-size",
        "5",
        "-concurrency",
        "2",
        "-quiet",
        cwd=tmp_path,
    )
    pulled = run_vmregistry(
        "pull",
        f"{registry}/cli/dashes:v1",
        "--output",
        "out",
        "--chunk-size",
        "2",
        "-q",
        "-retries",
        "1",
        cwd=tmp_path,
    )

    # THEN both work
    assert pushed.returncode == 0, pushed.stderr
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "out" / "disk.img").read_bytes() == (tmp_path / "disk.img").read_bytes()


def test_rm_without_a_tag_deletes_nothing(server: RunningServer, tmp_path: Path) -> None:
    # GIVEN an image tagged latest
    registry = server.url.removeprefix("http://")
    (tmp_path / "disk.img").write_bytes(os.urandom(4096))
    assert run_vmregistry("push", f"{registry}/cli/keep", "-disk", "disk.img", cwd=tmp_path).returncode == 0

    # WHEN rm is given the repository alone
    removed = run_vmregistry("rm", f"{registry}/cli/keep", cwd=tmp_path)

    # THEN it refuses, asking for the tag or digest, and latest is still there
    assert removed.returncode == 2
    assert "names no tag or digest" in removed.stderr
    assert run_vmregistry("tags", f"{registry}/cli/keep", cwd=tmp_path).stdout.split() == ["latest"]

    # AND with the tag spelled out, it deletes
    assert run_vmregistry("rm", f"{registry}/cli/keep:latest", cwd=tmp_path).returncode == 0


def test_an_interrupted_push_says_how_to_resume(server: RunningServer, tmp_path: Path) -> None:
    # GIVEN a multipart push whose connection breaks after the first part (the hook raises what a reset raises)
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(12 * MiB))
    output = io.StringIO()

    def reset(digest: str, number: int) -> None:
        raise TransientError("connection reset by peer")

    # WHEN it fails
    with RegistryClient.connect(server.url) as client, pytest.raises(TransientError):
        push_image(
            client,
            "cli/interrupted",
            "v1",
            [disk],
            options=PushOptions(part_size=5 * MiB, concurrency=1, on_part=reset, state_root=tmp_path / "state"),
            progress=Progress(output, "lines"),
        )

    # THEN the progress says it was interrupted and that running it again resumes, not just "failed"
    assert "push disk.img: interrupted (run the push again to resume) after 5.0 MiB of 12.0 MiB" in output.getvalue()


def test_ctrl_c_during_a_push_says_how_to_resume(server: RunningServer, tmp_path: Path) -> None:
    # GIVEN a push of a 1 GiB disk in 5 MiB parts, one at a time: sparse, but with a byte of data every
    # 4 MiB, so no zero run is long enough to be declared instead of sent (it is all sent, as parts)
    disk = tmp_path / "big.img"
    with open(disk, "wb") as handle:
        handle.truncate(1024 * MiB)
        for offset in range(0, 1024 * MiB, 4 * MiB):
            handle.seek(offset)
            handle.write(b"\x01")
    registry = server.url.removeprefix("http://")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ |= {"VMREGISTRY_CACHE_DIR": str(tmp_path / "cache"), "VMREGISTRY_CREDENTIALS": str(tmp_path / "none")}
    push = subprocess.Popen(
        [VMREGISTRY, "push", f"{registry}/cli/ctrl-c:v1", "-disk", str(disk), "-part-size", "5", "-concurrency", "1"],
        env=environ,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        # WHEN the user presses Ctrl-C once the upload has started and a part is stored
        assert push.stderr is not None
        seen = ""
        # The first progress line after the start: parts are flowing and three quarters remain.
        while "push big.img: 25%" not in seen:
            line = push.stderr.readline()
            assert line, f"the push ended before uploading: {seen}"
            seen += line
        push.send_signal(signal.SIGINT)
        _, rest = push.communicate(timeout=60)
        stderr = seen + rest
    finally:
        if push.poll() is None:
            push.kill()
            push.wait()

    # THEN it stops with 130 and says that running the same command again resumes
    assert push.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
