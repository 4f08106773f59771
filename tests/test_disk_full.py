"""A full disk is a 507 with the registry's JSON error on every write path, and the server goes on (issue 12).

The server runs on a real, small filesystem: a 16 MiB tmpfs mounted in a
mount namespace of its own (``unshare --mount``, root only), so the mount
disappears with the process and the test reads the server's files through
``/proc/<pid>/root``. Each way a body reaches the disk is filled past the
end: the data plane's presigned PUT (its space is reserved up front with
``posix_fallocate``), a streamed blob PUT with a length (reserved too) and a
chunked one (it runs out while writing).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.rawhttp import digest_of_blocks, put_stream

MiB = 1024 * 1024
REPO = "full/disk"


def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            str(where),
        ],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    volume = tmp_path / "volume"
    volume.mkdir()
    if not _can_mount_tmpfs(volume):
        pytest.skip("needs root and unshare --mount to give the server a small filesystem of its own")
    mount = 'mount -t tmpfs -o size=16m tmpfs "$0" && exec "$@"'
    prefix = ("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mount, str(volume))
    server = start_server(tmp_path, "-workers", "1", storage=volume / "storage", prefix=prefix)
    try:
        # The server's view of the volume (its own mount namespace); ours is the empty directory below it.
        yield server, Path(f"/proc/{server.process.pid}/root") / str(volume).lstrip("/") / "storage"
    finally:
        stop_server(server)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _error(status: int, body: bytes) -> tuple[int, str]:
    return status, json.loads(body)["errors"][0]["code"]


def test_a_full_disk_is_a_507_leaves_nothing_and_the_server_goes_on(small_disk: tuple[RunningServer, Path]) -> None:
    server, storage = small_disk
    # GIVEN a registry on a 16 MiB volume that holds one 4 MiB blob
    first = os.urandom(4 * MiB)
    first_digest = "sha256:" + hashlib.sha256(first).hexdigest()
    assert request("PUT", f"{server.url}/v1/{REPO}/blobs/{first_digest}", first).status == 201
    before = _files(storage)
    # WHEN 20 MiB arrive through the data plane's presigned PUT
    big = digest_of_blocks(20 * MiB, seed=1)
    started = request("POST", f"{server.url}/v1/{REPO}/blobs/uploads/?digest={big}&size={20 * MiB}")
    upload = started.json()["upload"]
    presigned = upload["url"].removeprefix(server.url)
    status, body, _ = put_stream(server.url, "PUT", presigned, 20 * MiB, seed=1)
    # THEN it is a 507 with the registry's error
    assert _error(status, body) == (507, "STORAGE_FULL")
    # WHEN 20 MiB are PUT whole to the API, with a length and chunked THEN each is a 507 too
    for chunked in (False, True):
        status, body, _ = put_stream(server.url, "PUT", f"/v1/{REPO}/blobs/{big}", 20 * MiB, seed=1, chunked=chunked)
        assert _error(status, body) == (507, "STORAGE_FULL")
    # AND nothing partial is anywhere: no temporary file, no staged body, no blob under the digest
    assert request("HEAD", f"{server.url}/v1/{REPO}/blobs/{big}").status == 404
    assert request("DELETE", f"{server.url}{started.json()['location']}").status == 204
    assert _files(storage) == before
    # AND the server goes on serving reads and writes that fit
    assert request("GET", f"{server.url}/v1/{REPO}/blobs/{first_digest}").status == 307
    second = os.urandom(2 * MiB)
    assert (
        request("PUT", f"{server.url}/v1/{REPO}/blobs/sha256:{hashlib.sha256(second).hexdigest()}", second).status
        == 201
    )
    # AND every refusal was logged with its status, not as a dropped connection
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    statuses = [line["status"] for line in lines if line.get("logger") == "vmregistry.local.access"]
    assert statuses.count(507) == 3
    assert 0 not in statuses
