"""Sparse disks end to end, on the filesystem and on S3 (LocalStack): what crosses the network is the data.

A real server per backend, the reference client, and raw HTTP where a test
plays a client that misbehaves. The disk is 48 MiB with 6 MiB of data in
three places; pushed while it is read, its zero runs are declared, not sent,
and its manifest names the ranges that hold data; a pull fetches those only
and leaves holes; a plain pull of the blob still gets every byte. A client
that declares zeros where its disk holds data gets DIGEST_INVALID, and a
manifest whose extents contradict the disk, or that the registry cannot
vouch for, gets MANIFEST_INVALID: nothing is published either way.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmregistry import paths
from vmregistry.client import Progress, PullOptions, PushOptions, RegistryClient, pull_image, push_image
from vmregistry.extents import DATA_ANNOTATION, Extent, parse_extents

from tests.conftest import RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.localstack import LocalStack, new_bucket_name, s3_env
from tests.registry_flows import digest_of, make_manifest, pull_blob, push_inline, put_manifest

MiB = 1024 * 1024
SIZE = 48 * MiB
PIECES = [(0, MiB), (20 * MiB, 3 * MiB), (46 * MiB, 2 * MiB)]


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    environ = {"VMREGISTRY_CACHE_DIR": "unused"}
    if request.param == "s3":
        localstack: LocalStack = request.getfixturevalue("localstack")
        environ = s3_env(localstack.endpoint, new_bucket_name("sparse"))
    running = start_server(tmp_path_factory.mktemp(f"sparse-{request.param}"), env=environ)
    running.kind = request.param  # type: ignore[attr-defined]
    yield running
    stop_server(running)


@pytest.fixture
def client(server: RunningServer) -> Iterator[RegistryClient]:
    with RegistryClient.connect(server.url) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VMREGISTRY_TOKEN", raising=False)
    monkeypatch.setenv("VMREGISTRY_CREDENTIALS", str(tmp_path / "no-credentials.json"))


def sparse_disk(path: Path) -> bytes:
    """The test disk (a new one each call: its data is random); returns its bytes."""
    with open(path, "wb") as handle:
        handle.truncate(SIZE)
        for offset, length in PIECES:
            handle.seek(offset)
            handle.write(os.urandom(length))
    return path.read_bytes()


def sparse_options(tmp_path: Path) -> PushOptions:
    """Parts of 8 MiB, sent while the disk is read (small disks are read first otherwise)."""
    return PushOptions(part_size=8 * MiB, read_first_below=0, state_root=tmp_path / "state")


def served_bytes(server: RunningServer, mark: int, path: str) -> int:
    lines = [json.loads(line) for line in server.logs().splitlines()[mark:] if line.startswith("{")]
    return sum(int(line.get("bytes", 0)) for line in lines if line.get("path") == path)


def test_a_sparse_disk_moves_as_its_data(server: RunningServer, client: RegistryClient, tmp_path: Path) -> None:
    # GIVEN a 48 MiB disk holding 6 MiB of data
    disk = tmp_path / "disk.img"
    content = sparse_disk(disk)
    lines = io.StringIO()

    # WHEN it is pushed while it is read
    result = push_image(
        client, "sparse/e2e", "v1", [disk], options=sparse_options(tmp_path), progress=Progress(lines, "lines")
    )

    # THEN only the data (in parts of at least 5 MiB) was sent, the rest declared zeros
    assert "push disk.img: pushed 48.0 MiB in" in lines.getvalue()
    assert "(12.0 MiB of it sent in this run," in lines.getvalue()
    # AND the manifest names the ranges that hold data, which the registry accepted
    layer = json.loads(result.manifest)["layers"][0]
    extents = parse_extents(layer["annotations"][DATA_ANNOTATION], SIZE)
    assert extents == [Extent(0, 5 * MiB), Extent(20 * MiB, 5 * MiB), Extent(46 * MiB, 2 * MiB)]
    if server.kind == "filesystem":  # type: ignore[attr-defined]
        blob = server.storage / paths.blob_key(layer["digest"])
        assert os.stat(blob).st_blocks * 512 <= 13 * MiB  # the zeros are holes: storage filled them
        assert (server.storage / paths.zeros_key(layer["digest"])).read_text() == "5242880+15728640,26214400+22020096"

    # WHEN the image is pulled
    mark = len(server.logs().splitlines())
    pulled = pull_image(client, "sparse/e2e", "v1", tmp_path / "out", options=PullOptions(chunk_size=2 * MiB))

    # THEN the disk is whole and sparse, and only its data ranges were fetched
    out = pulled.files[layer["digest"]]
    assert out.read_bytes() == content
    assert os.stat(out).st_blocks * 512 <= 8 * MiB
    if server.kind == "filesystem":  # type: ignore[attr-defined]
        assert 12 * MiB <= served_bytes(server, mark, "/_data/get") < 12 * MiB + 4096  # the data ranges, the config

    # AND a client that knows nothing of extents (curl, an OCI client) still gets every byte
    whole = pull_blob(server.url, "sparse/e2e", layer["digest"])
    assert whole.status == 200
    assert whole.body == content


def test_zeros_declared_over_data_are_refused_and_nothing_is_published(server: RunningServer) -> None:
    # GIVEN a 12 MiB blob whose second half holds data, and a client that declares it zeros anyway
    data = os.urandom(6 * MiB) + os.urandom(6 * MiB)
    digest = digest_of(data)
    started = request("POST", f"{server.url}/v1/sparse/liar/blobs/uploads/?size={len(data)}&partSize={6 * MiB}")
    assert started.status == 202, started.body
    location = started.json()["location"]
    urls = request("PATCH", f"{server.url}{location}?part=1:0")
    part = urls.json()["parts"][0]
    assert request(part["method"], part["url"], data[: 6 * MiB], part["headers"]).status == 200
    zeros = request("PATCH", f"{server.url}{location}?zero=2:{6 * MiB}:{6 * MiB}")
    assert zeros.status == 202, zeros.body

    # WHEN it completes with the true digest
    done = request("PUT", f"{server.url}{location}?digest={digest}")

    # THEN the assembled bytes miss it: DIGEST_INVALID, and the blob is not there, nor a record of its zeros
    if done.status == 202:  # verified by a worker: the session reports the outcome
        done = request("GET", f"{server.url}{location}")
        while done.json()["state"] == "verifying":
            done = request("GET", f"{server.url}{location}")
        assert done.json()["error"]["code"] == "DIGEST_INVALID"
    else:
        assert (done.status, done.error_codes) == (400, ["DIGEST_INVALID"])
    assert request("HEAD", f"{server.url}/v1/sparse/liar/blobs/{digest}").status == 404
    if server.kind == "filesystem":  # type: ignore[attr-defined]
        assert not (server.storage / paths.zeros_key(digest)).exists()


@pytest.mark.parametrize(
    ("extents", "reason"),
    [
        ("0+10485760,5242880+5242880", "overlaps"),
        ("0+60000000", "past the disk"),
        ("0+5242880", "does not know to be zeros"),  # leaves out data the disk holds
        ("0+5242880,20971520,", "not an extent"),
    ],
)
def test_manifests_whose_extents_contradict_their_disk_are_refused(
    server: RunningServer, client: RegistryClient, tmp_path: Path, extents: str, reason: str
) -> None:
    # GIVEN a sparse disk pushed with its zeros declared, and its config
    disk = tmp_path / "disk.img"
    sparse_disk(disk)
    result = push_image(client, "sparse/claims", "base", [disk], options=sparse_options(tmp_path))
    document = json.loads(result.manifest)

    # WHEN a manifest claims extents that overlap, run past the disk, leave out data, or do not parse
    document["layers"][0]["annotations"][DATA_ANNOTATION] = extents
    answer = put_manifest(server.url, "sparse/claims", "bad", json.dumps(document).encode())

    # THEN it is refused, saying why, and the tag does not exist
    assert (answer.status, answer.error_codes) == (400, ["MANIFEST_INVALID"])
    assert reason in answer.json()["errors"][0]["message"]
    assert request("GET", f"{server.url}/v1/sparse/claims/manifests/bad").status == 404


def test_extents_the_registry_cannot_vouch_for_are_refused_and_the_client_pushes_without_them(
    server: RunningServer, client: RegistryClient, tmp_path: Path
) -> None:
    # GIVEN a blob of zeros uploaded whole (no zero parts declared: the registry knows nothing of its zeros)
    zeros = bytes(4 * MiB)
    digest = push_inline(server.url, "sparse/unknown", zeros)
    config = push_inline(server.url, "sparse/unknown", b"{}")
    # WHEN a manifest claims the blob is all zeros
    manifest = json.loads(make_manifest((config, 2), [(digest, len(zeros))]))
    manifest["layers"][0]["annotations"] = {DATA_ANNOTATION: ""}
    answer = put_manifest(server.url, "sparse/unknown", "claim", json.dumps(manifest).encode())
    # THEN it is refused: a claim the registry cannot verify
    assert (answer.status, answer.error_codes) == (400, ["MANIFEST_INVALID"])

    # GIVEN a disk already in the repository, pushed by a client that declared no zeros
    disk = tmp_path / "plain.img"
    content = sparse_disk(disk)
    started = request("POST", f"{server.url}/v1/sparse/unknown/blobs/uploads/?mode=multipart")
    location = started.json()["location"]
    urls = request("PATCH", f"{server.url}{location}?part=1-6").json()["parts"]
    for part, offset in zip(urls, range(0, SIZE, 8 * MiB), strict=True):
        assert request(part["method"], part["url"], content[offset : offset + 8 * MiB], part["headers"]).status == 200
    done = request("PUT", f"{server.url}{location}?digest={digest_of(content)}")
    assert done.status in (201, 202), done.body

    # WHEN the reference client pushes the image of that disk (it plans zero parts, but sends nothing)
    lines = io.StringIO()
    result = push_image(
        client, "sparse/unknown", "v1", [disk], options=sparse_options(tmp_path), progress=Progress(lines, "lines")
    )

    # THEN the registry refused the extents it cannot vouch for, and the client pushed the manifest without them
    assert result.outcomes[digest_of(content)] == "exists"
    assert "a pull fetches all" in lines.getvalue()
    assert DATA_ANNOTATION not in json.loads(result.manifest)["layers"][0]["annotations"]
    assert request("GET", f"{server.url}/v1/sparse/unknown/manifests/v1").status == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("zero=1", "N:OFFSET:LENGTH"),
        ("zero=1:0:0", "N:OFFSET:LENGTH"),
        ("zero=0:0:5", "N:OFFSET:LENGTH"),
        ("zero=1:0:2147483648", "at most"),
        ("zero=" + ",".join(f"{n}:0:5242880" for n in range(1, 18)), "at most 16"),
        ("zero=1:0:5242880&part=1", "come alone"),
    ],
)
def test_zero_declarations_outside_the_protocol_are_refused(server: RunningServer, query: str, message: str) -> None:
    started = request("POST", f"{server.url}/v1/sparse/limits/blobs/uploads/?size={64 * MiB}&partSize={8 * MiB}")
    location = started.json()["location"]
    answer = request("PATCH", f"{server.url}{location}?{query}")
    assert (answer.status, answer.error_codes) == (400, ["BLOB_UPLOAD_INVALID"])
    assert message in answer.json()["errors"][0]["message"]
    request("DELETE", f"{server.url}{location}")


def test_a_part_placed_past_the_declared_size_is_refused(server: RunningServer) -> None:
    # GIVEN a session of 10 MiB written in place
    started = request("POST", f"{server.url}/v1/sparse/past/blobs/uploads/?size={10 * MiB}&partSize={5 * MiB}")
    location = started.json()["location"]
    # WHEN a part is placed so that it would end past 10 MiB
    part = request("PATCH", f"{server.url}{location}?part=2:{8 * MiB}").json()["parts"][0]
    sent = request(part["method"], part["url"], bytes(5 * MiB), part["headers"])
    zero = request("PATCH", f"{server.url}{location}?zero=2:{8 * MiB}:{5 * MiB}")
    request("DELETE", f"{server.url}{location}")
    # THEN the filesystem refuses it (S3 joins parts in order; completion would refuse the size)
    if server.kind == "filesystem":  # type: ignore[attr-defined]
        assert sent.status == 400
        assert (zero.status, zero.error_codes) == (400, ["BLOB_UPLOAD_INVALID"])
