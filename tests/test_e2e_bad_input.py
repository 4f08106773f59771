"""Every client mistake gets the right 4xx and a JSON error body, and nothing is written or lost.

One table of broken requests (``tests/bad_requests.py``) against a real
server. After the table, the storage root holds only what the valid setup
requests put there, and nothing at all was written outside it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vmregistry import paths

from tests.bad_requests import CASES, CONFIG, CONFIG_DIGEST, REPO
from tests.conftest import RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.registry_flows import digest_of, make_manifest, push_inline, put_manifest


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("hostile"))
    push_inline(running.url, REPO, CONFIG)
    yield running
    stop_server(running)


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_client_mistakes_get_a_clear_4xx(
    hostile: RunningServer, method: str, path: str, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    reply = request(method, hostile.url + path, body or None, headers)
    assert reply.status == status, reply.body[:500]
    if method != "HEAD":
        errors = reply.json()["errors"]
        assert errors, "an error response carries at least one error"
        assert all(set(e) == {"code", "message", "detail"} and e["message"] for e in errors)
        if code:
            assert errors[0]["code"] == code


def test_nothing_was_written_outside_the_storage_root(hostile: RunningServer) -> None:
    # GIVEN the whole hostile table has run against this server (module-scoped fixture, tests run in order)
    workdir = hostile.storage.parent
    # THEN the server's working directory holds only the storage root and logs
    assert sorted(p.name for p in workdir.iterdir() if not p.name.startswith("server-")) == ["storage"]
    # AND the storage root holds only the setup's blob and its link, with no temporary files left
    files = sorted(str(p.relative_to(hostile.storage)) for p in hostile.storage.rglob("*") if p.is_file())
    assert files == [
        paths.blob_key(CONFIG_DIGEST),
        paths.layer_key(REPO, CONFIG_DIGEST),
    ]


def test_the_data_plane_is_authorized_by_its_signature_alone(hostile: RunningServer) -> None:
    # GIVEN a valid presigned URL from a redirect, and one whose signature was tampered with
    redirect = request("GET", f"{hostile.url}/v1/{REPO}/blobs/{CONFIG_DIGEST}")
    location = redirect.header("Location")
    assert location is not None
    tampered = location.replace("X-Vmr-Signature=", "X-Vmr-Signature=0")
    # WHEN both are fetched with a bearer token attached, as OCI clients do when they follow a
    # redirect to the host and port they sent it to
    followed = request("GET", location, headers={"Authorization": "Bearer registry-token"})
    forged = request("GET", tampered, headers={"Authorization": "Bearer registry-token"})
    # THEN the token neither helps nor hurts: the signature decides
    assert followed.status == 200
    assert followed.body == CONFIG
    assert forged.status == 403
    assert forged.json()["errors"][0]["code"] == "SIGNATURE_INVALID"


def test_manifest_of_another_repository_is_not_visible(hostile: RunningServer) -> None:
    body = make_manifest((CONFIG_DIGEST, len(CONFIG)), [])
    assert put_manifest(hostile.url, REPO, "scoped", body).status == 201
    assert request("GET", f"{hostile.url}/v1/other/repo/manifests/scoped").status == 404
    assert request("DELETE", f"{hostile.url}/v1/{REPO}/manifests/{digest_of(body)}").status == 202
    assert not (hostile.storage / paths.manifests_prefix(REPO)).exists()
    assert not (hostile.storage / paths.CATALOG_PREFIX).exists()
