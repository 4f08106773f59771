"""Garbage collection frees exactly the blobs no repository holds, through the real CLI."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import VMREGISTRY, RunningServer
from tests.httpclient import request
from tests.registry_flows import push_inline


def gc(server: RunningServer, *args: str) -> str:
    result = subprocess.run(
        [VMREGISTRY, "gc", "-fs-path", str(server.storage), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_gc_frees_only_unlinked_blobs(server: RunningServer) -> None:
    # GIVEN one blob held by two repositories and another held by one
    shared = os.urandom(1000)
    alone = os.urandom(2000)
    shared_digest = push_inline(server.url, "gc/a", shared)
    push_inline(server.url, "gc/b", shared)
    alone_digest = push_inline(server.url, "gc/a", alone)
    # WHEN both are deleted from gc/a
    for digest in (shared_digest, alone_digest):
        assert request("DELETE", f"{server.url}/v1/gc/a/blobs/{digest}").status == 202
    # THEN within the grace period nothing is freed
    assert "deleted 0 blob(s)" in gc(server)
    # AND a dry run without grace names only the blob nobody holds
    dry = gc(server, "--grace", "0", "--dry-run")
    assert f"would delete {alone_digest}" in dry
    assert shared_digest not in dry
    assert (server.storage / "blobs/sha256" / alone_digest.removeprefix("sha256:")).exists()
    # WHEN collected for real THEN its bytes are gone and the shared blob still pulls from gc/b
    assert "2000 bytes" in gc(server, "--grace", "0")
    assert not (server.storage / "blobs/sha256" / alone_digest.removeprefix("sha256:")).exists()
    assert request("HEAD", f"{server.url}/v1/gc/b/blobs/{shared_digest}").status == 200
