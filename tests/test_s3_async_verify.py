"""Blobs too big to verify within one API request: 202, a worker verifies, the client polls.

The server runs on LocalStack's S3 with the asynchronous threshold lowered to
one byte, so a 12 MiB multipart blob takes the path a 50 GiB disk takes in AWS.
Locally the worker is the same ``blob_verify`` handler, run on a thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vmregistry.storage import MIN_PART_SIZE

from tests.conftest import VMREGISTRY, RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.localstack import LocalStack, new_bucket_name, s3_env
from tests.registry_flows import digest_of, pull_blob, send_parts, start_multipart


@pytest.fixture(scope="module")
def deferring(localstack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = s3_env(localstack.endpoint, new_bucket_name("async")) | {"VMREGISTRY_VERIFY_INLINE_BYTES": "1"}
    running = start_server(tmp_path_factory.mktemp("async"), env=env)
    yield running
    stop_server(running)


def poll_session(server: RunningServer, location: str) -> dict[str, Any] | None:
    """GET the session until it leaves ``verifying``: its JSON, or None once it is gone (published)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = request("GET", f"{server.url}{location}")
        if reply.status == 404:
            return None
        body: dict[str, Any] = reply.json()
        if body["state"] != "verifying":
            return body
        time.sleep(0.1)
    raise AssertionError("verification did not finish within a minute")


def upload(server: RunningServer, repo: str, data: bytes) -> dict[str, Any]:
    session = start_multipart(server.url, repo)
    send_parts(server.url, session, [data[:MIN_PART_SIZE], data[MIN_PART_SIZE:]])
    return session


def test_large_blob_is_published_after_the_answer(deferring: RunningServer) -> None:
    # GIVEN a two-part blob above the (lowered) inline-verification threshold
    data = os.urandom(MIN_PART_SIZE + 7 * 1024 * 1024)
    digest = digest_of(data)
    session = upload(deferring, "async/ok", data)
    # WHEN it is completed
    done = request("PUT", f"{deferring.url}{session['location']}?digest={digest}")
    # THEN the answer is 202 with the session verifying, not the blob
    assert done.status == 202, done.body
    assert done.json()["state"] == "verifying"
    # AND a second completion meanwhile is refused, naming the state
    again = request("PUT", f"{deferring.url}{session['location']}?digest={digest}")
    assert again.status in (400, 404)
    # AND once the worker is done the session is gone and the blob is there, byte for byte
    assert poll_session(deferring, session["location"]) is None
    head = request("HEAD", f"{deferring.url}/v1/async/ok/blobs/{digest}")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(data))
    assert pull_blob(deferring.url, "async/ok", digest).body == data


def test_wrong_digest_is_reported_on_the_session(deferring: RunningServer) -> None:
    # GIVEN a two-part blob completed under a digest it does not have
    data = os.urandom(MIN_PART_SIZE + 1000)
    claimed = digest_of(b"not these bytes")
    session = upload(deferring, "async/bad", data)
    assert request("PUT", f"{deferring.url}{session['location']}?digest={claimed}").status == 202
    # WHEN the client polls THEN the session reports the failure with the error code
    outcome = poll_session(deferring, session["location"])
    assert outcome is not None
    assert outcome["state"] == "failed"
    assert outcome["error"]["code"] == "DIGEST_INVALID"
    assert outcome["error"]["detail"]["actual"] == digest_of(data)
    # AND nothing is visible under either digest
    for digest in (claimed, digest_of(data)):
        assert request("HEAD", f"{deferring.url}/v1/async/bad/blobs/{digest}").status == 404
    # AND completing it again says why it failed
    retry = request("PUT", f"{deferring.url}{session['location']}?digest={claimed}")
    assert retry.status == 400
    assert retry.json()["errors"][0]["detail"]["error"]["code"] == "DIGEST_INVALID"
    # AND cancelling clears it
    assert request("DELETE", f"{deferring.url}{session['location']}").status == 204


def test_the_client_waits_for_the_verdict(deferring: RunningServer, tmp_path: Path) -> None:
    # GIVEN a 12 MiB disk pushed in 5 MiB parts by the reference client
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(12 * 1024 * 1024))
    host = deferring.url.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    env |= {"VMREGISTRY_CACHE_DIR": str(tmp_path / "cache"), "VMREGISTRY_CREDENTIALS": str(tmp_path / "none.json")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([VMREGISTRY, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)

    # WHEN it pushes (the registry answers 202 for the disk and verifies it afterwards)
    pushed = cli("push", f"{host}/async/cli:v1", "--disk", str(disk), "--part-size", "5", "-q")
    # THEN the push waits, succeeds, and the image pulls back byte for byte
    assert pushed.returncode == 0, pushed.stderr
    completions = [
        json.loads(line)
        for line in deferring.logs().splitlines()
        if line.startswith("{") and '"/v1/async/cli/blobs/uploads/' in line and '"PUT"' in line
    ]
    assert [c["status"] for c in completions] == [202], "the disk took the asynchronous path"
    pulled = cli("pull", f"{host}/async/cli:v1", "-o", str(tmp_path / "out"), "-q")
    assert pulled.returncode == 0, pulled.stderr
    assert [p.read_bytes() for p in (tmp_path / "out").iterdir() if p.stat().st_size == disk.stat().st_size] == [
        disk.read_bytes()
    ]


def test_a_sparse_disk_is_verified_by_the_worker_and_published_with_its_zeros(
    deferring: RunningServer, tmp_path: Path
) -> None:
    # GIVEN a 40 MiB disk with 4 MiB of data at its start and end, pushed while it is read, zeros declared
    from vmregistry.client import PushOptions, RegistryClient, push_image
    from vmregistry.extents import DATA_ANNOTATION

    disk = tmp_path / "sparse.img"
    with open(disk, "wb") as handle:
        handle.truncate(40 * 1024 * 1024)
        handle.write(os.urandom(2 * 1024 * 1024))
        handle.seek(38 * 1024 * 1024)
        handle.write(os.urandom(2 * 1024 * 1024))
    options = PushOptions(part_size=8 * 1024 * 1024, read_first_below=0, state_root=tmp_path / "state")
    # WHEN it is pushed (completion answers 202: the worker verifies, the declared zeros hashed from memory)
    with RegistryClient.connect(deferring.url) as client:
        result = push_image(client, "async/sparse", "v1", [disk], options=options)
    # THEN it is published with its zeros on record: the manifest naming only its data ranges was accepted
    layer = json.loads(result.manifest)["layers"][0]
    assert result.outcomes[layer["digest"]] == "multipart"
    assert layer["annotations"][DATA_ANNOTATION] == "0+5242880,39845888+2097152"
    assert pull_blob(deferring.url, "async/sparse", layer["digest"]).body == disk.read_bytes()
