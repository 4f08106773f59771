"""``vmregistry serve -workers N``: real pre-forked servers on loopback, real flows across workers.

Each step of a flow is sent to the worker the test chooses (a connection
pinned to it: :mod:`tests.workerkit`): a presigned URL signed by one worker is
redeemed at another, a session started on one is completed on the other, and
what one stores the others read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from vmregistry import mediatypes
from vmregistry.storage import MIN_PART_SIZE

from tests.conftest import RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.registry_flows import digest_of, make_manifest, pull_blob, push_multipart, push_single, put_manifest
from tests.workerkit import Pinned, alive, one_connection_per_worker, worker_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find workers")


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
