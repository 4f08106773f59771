"""/v2 uploads of large bodies through the local server keep its memory flat, on the filesystem and on S3.

What skopeo and podman send (the whole blob in one streamed ``PATCH``) is
received into storage as it arrives and becomes the upload's part by a move;
a large body after a small one is copied into parts a few MiB at a time
(``registry/appends.py``). Either way the server's peak resident set hardly
moves, as for ``/v1`` (``tests/test_streamed_bodies.py``, whose server fixture
this module shares).
"""

from __future__ import annotations

import pytest

from tests.httpclient import request
from tests.rawhttp import put_stream
from tests.test_streamed_bodies import FLAT, MiB, Served, _digest_of_chunks, served  # noqa: F401 - the fixture

REPO = "stream/oci"


def push_v2(url: str, sizes: list[int], seed: int) -> str:
    """An OCI upload: POST, one streamed PATCH per size (no Content-Range), the closing PUT."""
    started = request("POST", f"{url}/v2/{REPO}/blobs/uploads/")
    assert started.status == 202, started.body
    location = started.header("Location") or ""
    received = 0
    for index, size in enumerate(sizes):
        status, body, headers = put_stream(url, "PATCH", location, size, seed * 100 + index)
        received += size
        assert status == 202, body[:500]
        assert headers["range"] == f"0-{received - 1}"
    digest = _digest_of_chunks(sizes, seed)
    closed = request("PUT", f"{url}{location}?digest={digest}")
    assert closed.status == 201, closed.body
    return digest


@pytest.mark.slow
def test_streamed_and_appended_v2_bodies_keep_the_server_memory_flat(served: Served) -> None:  # noqa: F811
    # GIVEN a server that has already taken a small OCI upload
    push_v2(served.url, [2 * MiB, 6 * MiB], seed=5)
    baseline = served.peak_rss()
    # WHEN a 200 MB blob comes in one PATCH (as skopeo sends it), and another 100 MB one after a small chunk
    whole = push_v2(served.url, [200 * MiB], seed=6)
    joined = push_v2(served.url, [MiB, 100 * MiB], seed=7)
    # THEN both are stored byte for byte, and the server's peak memory hardly moved
    for digest in (whole, joined):
        head = request("HEAD", f"{served.url}/v2/{REPO}/blobs/{digest}")
        assert head.status == 200, digest
    grown = served.peak_rss() - baseline
    assert grown < FLAT, f"peak RSS grew by {grown / MiB:.1f} MiB moving 300 MB (baseline {baseline / MiB:.1f} MiB)"
    # AND nothing is left besides the blobs
    assert served.leftovers() == []
