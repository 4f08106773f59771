"""Interrupted transfers resume: a push sends only the parts storage lacks, a pull asks only for missing ranges.

The interruption is a hook that raises after N parts or chunks (as a crash
or Ctrl-C would stop the transfer there); what the second run sends is
counted in the server's JSON access log, which records every data-plane
request.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vmregistry.client import PullOptions, PushOptions, RegistryClient, pull_image, push_image

from tests.conftest import VMREGISTRY, RunningServer

MiB = 1024 * 1024


class Interrupted(Exception):
    """Stands for the process dying at that point."""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VMREGISTRY_TOKEN", raising=False)
    monkeypatch.setenv("VMREGISTRY_CREDENTIALS", str(tmp_path / "no-credentials.json"))


@pytest.fixture
def client(server: RunningServer) -> Iterator[RegistryClient]:
    with RegistryClient.connect(server.url) as opened:
        yield opened


def make_disk(path: Path) -> Path:
    """12 MiB: three 5 MiB parts for push, three 4 MiB chunks for pull; zeros in the middle."""
    path.write_bytes(os.urandom(6 * MiB) + bytes(4 * MiB) + os.urandom(2 * MiB))
    return path


def requests_since(server: RunningServer, mark: int, method: str, path: str, expect: int) -> int:
    """How many ``method path`` requests succeeded (GETs: with 206, i.e. ranged) after log line ``mark``.

    The server writes a log line just after it sends the response, so the
    client can be ahead of the log: wait (bounded) until ``expect`` appear,
    then report what is there, more or less.
    """
    deadline = time.monotonic() + 10
    while True:
        count = 0
        for line in server.logs().splitlines()[mark:]:
            entry = json.loads(line) if line.startswith("{") else {}
            if (
                entry.get("method") == method
                and entry.get("path") == path
                and entry.get("status") == (206 if method == "GET" else 200)
            ):
                count += 1
        if count >= expect or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def log_mark(server: RunningServer) -> int:
    return len(server.logs().splitlines())


def interrupt_after(n: int, only: str | None = None) -> tuple[list[int], Callable[[str, int], None]]:
    """A part/chunk hook that raises after ``n`` calls (counting only blob ``only`` if given)."""
    seen: list[int] = []

    def hook(digest: str, number: int) -> None:
        if only is not None and digest != only:
            return
        seen.append(number)
        if len(seen) >= n:
            raise Interrupted(f"stopped after {n}")

    return seen, hook


def test_interrupted_push_resumes_with_only_the_missing_parts(
    server: RunningServer, client: RegistryClient, tmp_path: Path
) -> None:
    # GIVEN a push of a three-part disk that dies after its first part is stored
    disk = make_disk(tmp_path / "disk.img")
    _, hook = interrupt_after(1)
    state = tmp_path / "state"
    mark = log_mark(server)
    with pytest.raises(Interrupted):
        push_image(
            client,
            "resume/push",
            "v1",
            [disk],
            options=PushOptions(part_size=5 * MiB, concurrency=1, state_root=state, on_part=hook),
        )
    first_run = requests_since(server, mark, "PUT", "/_data/part", 1)
    assert first_run == 1
    assert list((state / "uploads").glob("*.json"))

    # WHEN the push runs again
    mark = log_mark(server)
    result = push_image(
        client, "resume/push", "v1", [disk], options=PushOptions(part_size=5 * MiB, concurrency=2, state_root=state)
    )

    # THEN it resumed the session and sent only the two missing parts
    assert result.outcomes[next(iter(result.outcomes))] == "resumed"
    assert requests_since(server, mark, "PUT", "/_data/part", 2) == 2
    assert not list((state / "uploads").glob("*.json"))
    pull_image(client, "resume/push", "v1", tmp_path / "out")
    assert (tmp_path / "out" / "disk.img").read_bytes() == disk.read_bytes()


def test_push_after_the_session_expired_starts_over(
    server: RunningServer, client: RegistryClient, tmp_path: Path
) -> None:
    # GIVEN an interrupted push whose session the server no longer knows (swept or cancelled)
    disk = make_disk(tmp_path / "disk.img")
    _, hook = interrupt_after(1)
    state = tmp_path / "state"
    options = PushOptions(part_size=5 * MiB, concurrency=1, state_root=state, on_part=hook)
    with pytest.raises(Interrupted):
        push_image(client, "resume/expired", "v1", [disk], options=options)
    saved = json.loads(next((state / "uploads").glob("*.json")).read_text())
    client.call("DELETE", client.url(f"/v1/resume/expired/blobs/uploads/{saved['uuid']}"))

    # WHEN the push runs again
    mark = log_mark(server)
    result = push_image(
        client, "resume/expired", "v1", [disk], options=PushOptions(part_size=5 * MiB, state_root=state)
    )

    # THEN it uploaded every part into a new session
    assert result.outcomes[next(iter(result.outcomes))] == "multipart"
    assert requests_since(server, mark, "PUT", "/_data/part", 3) == 3


def test_interrupted_pull_resumes_with_range_requests_for_the_rest(
    server: RunningServer, client: RegistryClient, tmp_path: Path
) -> None:
    # GIVEN a pushed image, and a pull (three 4 MiB chunks) that dies after its first chunk
    disk = make_disk(tmp_path / "disk.img")
    push_image(client, "resume/pull", "v1", [disk], options=PushOptions(state_root=tmp_path / "state"))
    out = tmp_path / "out"
    _, hook = interrupt_after(1, only="sha256:" + hashlib.sha256(disk.read_bytes()).hexdigest())
    with pytest.raises(Interrupted):
        pull_image(
            client, "resume/pull", "v1", out, options=PullOptions(chunk_size=4 * MiB, concurrency=1, on_chunk=hook)
        )
    assert not (out / "disk.img").exists()
    assert (out / "disk.img.partial").exists()
    assert json.loads((out / "disk.img.partial.json").read_text())["done"] == [0]

    # WHEN the pull runs again
    mark = log_mark(server)
    pull_image(client, "resume/pull", "v1", out, options=PullOptions(chunk_size=4 * MiB, concurrency=2))

    # THEN only the two missing ranges were fetched (the config was already verified), and the result is whole
    assert requests_since(server, mark, "GET", "/_data/get", 2) == 2
    assert (out / "disk.img").read_bytes() == disk.read_bytes()
    assert not (out / "disk.img.partial").exists()
    assert not (out / "disk.img.partial.json").exists()


_KILLED_MIDWAY = """
import os, signal, sys
from pathlib import Path
from vmregistry.client import PullOptions, PushOptions, RegistryClient, pull_image, push_image

mode, url, disk, out = sys.argv[1:5]
MiB = 1024 * 1024

def die(digest, number):
    if digest == sys.argv[5]:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: like a crash or kill -9

client = RegistryClient.connect(url)
if mode == "push":
    push_image(client, "resume/killed", "v1", [Path(disk)],
               options=PushOptions(part_size=5 * MiB, concurrency=1, on_part=die))
else:
    pull_image(client, "resume/killed", "v1", Path(out),
               options=PullOptions(chunk_size=4 * MiB, concurrency=1, on_chunk=die))
"""


def test_a_killed_process_resumes_through_the_cli(server: RunningServer, tmp_path: Path) -> None:
    # GIVEN a push process killed with SIGKILL right after its first part was stored
    disk = make_disk(tmp_path / "disk.img")
    digest = "sha256:" + hashlib.sha256(disk.read_bytes()).hexdigest()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    env |= {"VMREGISTRY_CACHE_DIR": str(tmp_path / "cache"), "VMREGISTRY_CREDENTIALS": str(tmp_path / "none")}
    mark = log_mark(server)
    script = [sys.executable, "-c", _KILLED_MIDWAY]
    push = subprocess.run([*script, "push", server.url, str(disk), "", digest], env=env, timeout=60, check=False)
    assert push.returncode == -signal.SIGKILL
    assert requests_since(server, mark, "PUT", "/_data/part", 1) == 1

    # WHEN `vmregistry push` runs with the same cache
    mark = log_mark(server)
    registry = server.url.removeprefix("http://")
    pushed = subprocess.run(
        [VMREGISTRY, "push", f"{registry}/resume/killed:v1", "--disk", str(disk), "--part-size", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN it resumed and sent only the two other parts, and its rate counts only the bytes this run sent
    assert pushed.returncode == 0, pushed.stderr
    assert "resuming, 1 of 3 parts already stored" in pushed.stderr
    assert requests_since(server, mark, "PUT", "/_data/part", 2) == 2
    assert "push disk.img: pushed 12.0 MiB in" in pushed.stderr
    assert "(7.0 MiB of it sent in this run, " in pushed.stderr

    # GIVEN a pull process killed right after its first chunk
    out = tmp_path / "out"
    pull = subprocess.run([*script, "pull", server.url, "", str(out), digest], env=env, timeout=60, check=False)
    assert pull.returncode == -signal.SIGKILL
    assert (out / "disk.img.partial").exists()

    # WHEN `vmregistry pull` runs into the same directory
    mark = log_mark(server)
    pulled = subprocess.run(
        [VMREGISTRY, "pull", f"{registry}/resume/killed:v1", "-o", str(out), "--chunk-size", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # THEN it fetched only the two missing ranges, and the disk is whole; the rate is of those 8 MiB
    assert pulled.returncode == 0, pulled.stderr
    assert "resuming, 1 of 3 chunks already downloaded" in pulled.stderr
    assert "(8.0 MiB of it sent in this run, " in pulled.stderr
    assert requests_since(server, mark, "GET", "/_data/get", 2) == 2
    assert (out / "disk.img").read_bytes() == disk.read_bytes()
