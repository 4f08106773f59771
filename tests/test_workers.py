"""``vmregistry serve -workers N``: real pre-forked servers on loopback, real flows across workers.

A keep-alive connection stays with the worker that accepted it, so a test that
holds one connection per worker decides which process serves each step of a
flow. Which worker holds a connection is read from the kernel (Linux
``/proc``): the server-side socket of the connection is in that worker's
descriptor table.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from vmregistry import mediatypes
from vmregistry.config import Settings
from vmregistry.local.app import LocalServer
from vmregistry.storage import MIN_PART_SIZE

from tests.conftest import RunningServer, start_server, stop_server
from tests.httpclient import Reply, request
from tests.registry_flows import digest_of, make_manifest, pull_blob, push_multipart, push_single, put_manifest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers")

WAIT = 30.0
"""Upper bound for things that happen on their own (a replacement worker, an exit): a hang guard only."""


def worker_pids(server: RunningServer) -> list[int]:
    """The workers alive, from the supervisor's "serving" lines (a replaced worker's line is followed by another)."""
    serving: dict[int, int] = {}
    for index, pid in re.findall(r"worker (\d+) serving \(pid (\d+)\)", server.logs()):
        serving[int(index)] = int(pid)
    return [serving[i] for i in sorted(serving)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + WAIT
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def _socket_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if (local_port, remote_port) == (server_port, client_port):
                    return int(fields[9])
    return None


def _holder(pids: list[int], inode: int) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except FileNotFoundError:
                continue
    return None


class Pinned:
    """A keep-alive connection, and the worker process that accepted it."""

    def __init__(self, url: str, workers: list[int]) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.request("GET", "/v1/")
        client_port = self.connection.sock.getsockname()[1]
        inode = _socket_inode(self.port, client_port)
        assert inode is not None
        self.worker = _holder(workers, inode)

    def request(
        self, method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        if target.startswith("http://"):  # a presigned URL: same server, any worker
            parts = urlsplit(target)
            target = f"{parts.path}?{parts.query}"
        self.connection.request(method, target, body=body, headers=headers or {})
        response = self.connection.getresponse()
        reply = Reply(response.status, response.headers, response.read())
        assert not response.will_close, f"{method} {target}: the server closed the connection ({reply.status})"
        return reply

    def close(self) -> None:
        self.connection.close()


def one_connection_per_worker(server: RunningServer) -> list[Pinned]:
    """Open connections until every worker holds one; keep one per worker, in worker order."""
    workers = worker_pids(server)
    held: dict[int, Pinned] = {}
    spare: list[Pinned] = []
    for _ in range(200):
        if len(held) == len(workers):
            break
        pinned = Pinned(server.url, workers)
        assert pinned.worker in workers
        if pinned.worker in held:
            spare.append(pinned)
        else:
            held[pinned.worker] = pinned
    for pinned in spare:
        pinned.close()
    assert len(held) == len(workers), "the kernel never handed a connection to some worker"
    return [held[pid] for pid in workers]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("workers"), "-workers", "2")
    yield running
    stop_server(running)


@pytest.fixture
def pinned(two_workers: RunningServer) -> Iterator[list[Pinned]]:
    connections = one_connection_per_worker(two_workers)
    yield connections
    for connection in connections:
        connection.close()


def test_the_group_is_announced_once_every_worker_serves(two_workers: RunningServer) -> None:
    # GIVEN a server started with -workers 2
    # THEN it announced two workers, both alive, neither of them the supervisor
    assert "2 worker processes" in two_workers.logs()
    workers = worker_pids(two_workers)
    assert len(workers) == 2
    assert all(alive(pid) for pid in workers)
    assert two_workers.process.pid not in workers


def test_a_single_put_flow_whose_steps_alternate_workers(two_workers: RunningServer, pinned: list[Pinned]) -> None:
    a, b = pinned
    data = os.urandom(2 * 1024 * 1024)
    digest = digest_of(data)
    # GIVEN an upload declared on worker A
    started = a.request("POST", f"/v1/spread/single/blobs/uploads/?digest={digest}&size={len(data)}")
    assert started.status == 202, started.body
    session = started.json()
    upload = session["upload"]
    # WHEN its presigned URL (signed by A) is redeemed at worker B, and A completes it
    sent = b.request(upload["method"], upload["url"], data, upload["headers"])
    assert sent.status == 200, sent.body
    done = a.request("PUT", f"{session['location']}?digest={digest}")
    assert done.status == 201, done.body
    # THEN B reports it, and B's redirect (signed by B) downloads it at A
    assert b.request("HEAD", f"/v1/spread/single/blobs/{digest}").status == 200
    redirect = b.request("GET", f"/v1/spread/single/blobs/{digest}")
    assert redirect.status == 307
    location = redirect.header("Location")
    assert location is not None
    assert a.request("GET", location).body == data


def test_a_multipart_flow_and_its_manifest_across_workers(two_workers: RunningServer, pinned: list[Pinned]) -> None:
    a, b = pinned
    data = os.urandom(2 * MIN_PART_SIZE + 1000)
    digest = digest_of(data)
    chunks = [data[i : i + MIN_PART_SIZE] for i in range(0, len(data), MIN_PART_SIZE)]
    # GIVEN a multipart session started on B, its part URLs issued by A
    started = b.request("POST", "/v1/spread/multi/blobs/uploads/")
    assert started.status == 202, started.body
    location = started.json()["location"]
    parts = a.request("PATCH", f"{location}?part=1-{len(chunks)}")
    assert parts.status == 202, parts.body
    # WHEN the parts go to alternating workers, B reads the status and A completes
    for number, (part, chunk) in enumerate(zip(parts.json()["parts"], chunks, strict=True)):
        sent = (a, b)[number % 2].request(part["method"], part["url"], chunk, part["headers"])
        assert sent.status == 200, sent.body
    progress = b.request("GET", location)
    assert progress.status == 200
    assert progress.json()["uploaded"] == len(data)
    done = a.request("PUT", f"{location}?digest={digest}")
    assert done.status == 201, done.body
    # AND a manifest referencing it is put on B and read on A
    config = b"{}"
    assert a.request("PUT", f"/v1/spread/multi/blobs/{digest_of(config)}", config).status == 201
    manifest = make_manifest((digest_of(config), len(config)), [(digest, len(data))])
    stored = b.request("PUT", "/v1/spread/multi/manifests/v1", manifest, {"Content-Type": mediatypes.MANIFEST})
    assert stored.status == 201, stored.body
    fetched = a.request("GET", "/v1/spread/multi/manifests/v1")
    # THEN every worker sees what the others stored
    assert fetched.body == manifest
    assert pull_blob(two_workers.url, "spread/multi", digest).body == data


def test_concurrent_pushes_on_fresh_connections(two_workers: RunningServer) -> None:
    # GIVEN 24 pushes at once, each request on a new connection (any worker may accept it)
    blobs = [os.urandom(256 * 1024 + n) for n in range(24)]

    def push(n: int) -> bool:
        repo = f"crowd/r{n % 4}"
        if n % 3 == 0:
            digest = push_multipart(two_workers.url, repo, blobs[n] * 25, MIN_PART_SIZE)
            expected = blobs[n] * 25
        else:
            digest = push_single(two_workers.url, repo, blobs[n])
            expected = blobs[n]
        config = b'{"n": %d}' % n
        request("PUT", f"{two_workers.url}/v1/{repo}/blobs/{digest_of(config)}", config)
        manifest = make_manifest((digest_of(config), len(config)), [(digest, len(expected))])
        assert put_manifest(two_workers.url, repo, f"t{n}", manifest).status == 201
        return pull_blob(two_workers.url, repo, digest).body == expected

    # WHEN they run on eight threads
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(push, range(24)))
    # THEN every one lands, and every tag lists
    assert all(results)
    for repo in range(4):
        tags = request("GET", f"{two_workers.url}/v1/crowd/r{repo}/tags/list").json()["tags"]
        assert sorted(tags) == sorted(f"t{n}" for n in range(24) if n % 4 == repo)


def test_access_lines_name_the_worker_that_served(tmp_path: Path) -> None:
    # GIVEN a two-worker server that served a request on each worker
    server = start_server(tmp_path, "-workers", "2")
    try:
        connections = one_connection_per_worker(server)
        for connection in connections:
            assert connection.request("GET", "/v1/_catalog").status == 200
            connection.close()
    finally:
        # WHEN it stops (a graceful stop writes every queued line)
        stop_server(server)
    # THEN the catalog lines carry the pid of each worker
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    served = {entry["pid"] for entry in lines if entry.get("path") == "/v1/_catalog"}
    assert served == {c.worker for c in connections}


def test_sigterm_stops_every_worker(tmp_path: Path) -> None:
    # GIVEN a three-worker server
    server = start_server(tmp_path, "-workers", "3")
    workers = worker_pids(server)
    assert len(workers) == 3
    # WHEN the supervisor gets SIGTERM
    server.process.send_signal(signal.SIGTERM)
    # THEN it exits 0 once its workers are gone: it reaped them itself
    assert server.process.wait(WAIT) == 0
    assert [p for p in workers if alive(p)] == []
    assert "SIGTERM: stopping 3 workers" in server.logs()


def test_a_request_being_served_finishes_when_the_server_stops(tmp_path: Path) -> None:
    # GIVEN a two-worker server, and a presigned PUT whose body is half sent
    server = start_server(tmp_path, "-workers", "2")
    try:
        data = os.urandom(8 * 1024 * 1024)
        digest = digest_of(data)
        started = request("POST", f"{server.url}/v1/drain/repo/blobs/uploads/?digest={digest}&size={len(data)}")
        upload = started.json()["upload"]
        target = urlsplit(upload["url"])
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
        connection.putrequest(upload["method"], f"{target.path}?{target.query}")
        for name, value in {**upload["headers"], "Content-Length": str(len(data))}.items():
            connection.putheader(name, value)
        connection.endheaders()
        connection.send(data[: len(data) // 2])
        # WHEN the server is told to stop, and the rest of the body arrives once its worker said it is finishing
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while "finishing 1 requests in progress" not in server.logs() and time.monotonic() < deadline:
            time.sleep(0.02)
        connection.send(data[len(data) // 2 :])
        response = connection.getresponse()
        # THEN the request completes, telling the client not to reuse the connection, and the server exits
        assert response.status == 200, response.read()
        assert response.getheader("Connection") == "close"
        response.read()
        connection.close()
        assert server.process.wait(WAIT) == 0
    finally:
        stop_server(server)


def test_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    # GIVEN a two-worker server
    server = start_server(tmp_path, "-workers", "2")
    try:
        first, second = worker_pids(server)
        # WHEN worker 0 is killed outright
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while worker_pids(server)[0] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        # THEN the supervisor says so and starts another worker 0; worker 1 is untouched
        replacement, untouched = worker_pids(server)
        assert replacement != first
        assert untouched == second
        assert f"worker 0 (pid {first}) died (killed by SIGKILL)" in server.logs()
        # AND the group serves a full flow again, on both workers
        a, b = one_connection_per_worker(server)
        assert {a.worker, b.worker} == {replacement, second}
        data = os.urandom(100_000)
        assert b.request("PUT", f"/v1/after/crash/blobs/{digest_of(data)}", data).status == 201
        assert a.request("HEAD", f"/v1/after/crash/blobs/{digest_of(data)}").status == 200
        a.close()
        b.close()
    finally:
        stop_server(server)
    assert server.process.returncode == 0


def test_workers_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    # GIVEN a two-worker server
    server = start_server(tmp_path, "-workers", "2")
    workers = worker_pids(server)
    # WHEN the supervisor is killed without a chance to stop them
    server.process.kill()
    server.process.wait()
    # THEN the workers notice and exit on their own
    assert wait_until_gone(workers) == []


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    # GIVEN S3 storage without a bucket: every worker would fail the same way
    log = tmp_path / "serve.log"
    with open(log, "w") as handle:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("vmregistry")), "serve", "-port", "0", "-workers", "2"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")} | {"VMREGISTRY_STORAGE": "s3"},
            cwd=tmp_path,
            timeout=WAIT,
            check=False,
        )
    # THEN the server exits with the worker's status, saying why, and never announces itself
    text = log.read_text()
    assert done.returncode == 2, text
    assert "worker 0 could not start: -s3-bucket (VMREGISTRY_S3_BUCKET) is required" in text
    assert "listening on" not in text
    assert "worker 1" not in text


def test_only_worker_zero_sweeps_uploads(tmp_path: Path) -> None:
    # GIVEN upload data two days old that lost its session
    orphan = tmp_path / "storage" / "uploads" / "0123abcd-0000-4000-8000-000000000000" / "data"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left behind")
    old = time.time() - 2 * 24 * 3600
    os.utime(orphan, (old, old))
    # WHEN three workers start and stop
    server = start_server(tmp_path, "-workers", "3")
    workers = worker_pids(server)
    stop_server(server)
    # THEN worker 0 swept it, and it is gone
    sweeps = [json.loads(line) for line in server.logs().splitlines() if "1 orphaned upload object" in line]
    assert [entry["pid"] for entry in sweeps] == [workers[0]]
    assert not orphan.exists()


def test_one_worker_serves_from_the_process_itself(tmp_path: Path) -> None:
    # GIVEN -workers 1
    server = start_server(tmp_path, "-workers", "1")
    try:
        # THEN there is no supervisor: the process started is the one serving
        assert "(storage: filesystem" in server.logs()
        assert "1 process)" in server.logs()
        assert worker_pids(server) == []
        assert request("GET", f"{server.url}/v1/").status == 200
    finally:
        stop_server(server)
    # AND SIGTERM stops it as it stops a group: cleanly, status 0
    assert server.process.returncode == 0


def test_the_worker_count_comes_from_the_environment(tmp_path: Path) -> None:
    # GIVEN VMREGISTRY_WORKERS=3 and no flag
    server = start_server(tmp_path, env={"VMREGISTRY_WORKERS": "3"})
    try:
        # THEN three workers serve
        assert len(worker_pids(server)) == 3
    finally:
        stop_server(server)


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_worker_count_below_one_is_refused(tmp_path: Path, value: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("vmregistry")), "serve", "-workers", value],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 2
    assert "at least 1" in done.stderr


# -- what several processes write to one log ------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_reset_keep_alive_connection_is_not_reported(tmp_path: Path) -> None:
    # GIVEN a server, and a client that reset its connection while the server waited for the next request
    server = LocalServer(Settings(fs_path=str(tmp_path / "root")), port=0)
    captured = _Records()
    logger = logging.getLogger("vmregistry.local.server")
    logger.addHandler(captured)
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            # WHEN the HTTP server reports it
            server.httpd.handle_error(None, ("127.0.0.1", 5555))
        # THEN nothing is logged (the stdlib would print a traceback, in pieces, to stderr)
        assert captured.records == []
        try:
            raise ValueError("a real fault")
        except ValueError:
            server.httpd.handle_error(None, ("127.0.0.1", 5555))
        # AND a real fault is one record, with its traceback
        assert [r.getMessage() for r in captured.records] == ["unexpected error serving 127.0.0.1"]
        assert captured.records[0].exc_info is not None
    finally:
        logger.removeHandler(captured)
        server.httpd.server_close()
