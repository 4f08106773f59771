"""How a group of workers lives and dies: starting, draining on SIGTERM, replacing the dead, and logging.

The supervisor reaps its workers on SIGTERM after they finish the requests in
progress, replaces a worker that died, stops the whole server when a worker
cannot start, and dies with no orphans left behind; only worker 0 sweeps
uploads; ``-workers 1`` serves from the process itself. What several
processes write to one log names the worker, and a reset keep-alive
connection is not reported as a fault.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from vmregistry.config import Settings
from vmregistry.local.app import LocalServer

from tests.conftest import start_server, stop_server
from tests.httpclient import request
from tests.registry_flows import digest_of
from tests.workerkit import WAIT, alive, one_connection_per_worker, wait_until_gone, worker_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers")


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
