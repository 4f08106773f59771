"""End to end: a real ``vmregistry serve`` process on the filesystem backend, over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from vmregistry import mediatypes
from vmregistry.storage import MIN_PART_SIZE

from tests.conftest import VMREGISTRY, RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.registry_flows import (
    digest_of,
    make_manifest,
    pull_blob,
    push_inline,
    push_multipart,
    push_single,
    put_manifest,
    send_parts,
    start_multipart,
)

CONFIG = json.dumps({"cpus": 2, "memoryMiB": 2048, "bootloader": "uefi"}).encode()


def test_version_check(server: RunningServer) -> None:
    reply = request("GET", f"{server.url}/v1/")
    assert reply.status == 200
    assert reply.json() == {}
    assert reply.header("VmRegistry-API-Version") == "v1"


def test_inline_blob_round_trip_with_range(server: RunningServer) -> None:
    # GIVEN a 3 MiB blob pushed inline into a nested repository
    data = os.urandom(3 * 1024 * 1024)
    digest = push_inline(server.url, "team/ubuntu", data)
    # WHEN it is inspected with HEAD THEN size and digest are reported
    head = request("HEAD", f"{server.url}/v1/team/ubuntu/blobs/{digest}")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(data))
    assert head.header("Docker-Content-Digest") == digest
    # WHEN it is pulled through the redirect THEN the bytes match, whole and by range
    assert pull_blob(server.url, "team/ubuntu", digest).body == data
    ranged = pull_blob(server.url, "team/ubuntu", digest, "bytes=100-199")
    assert ranged.status == 206
    assert ranged.body == data[100:200]


def test_single_put_flow_and_blob_scoping(server: RunningServer) -> None:
    # GIVEN a 9 MiB blob pushed through the presigned single PUT
    data = os.urandom(9 * 1024 * 1024)
    digest = push_single(server.url, "vm/debian", data)
    assert pull_blob(server.url, "vm/debian", digest).body == data
    # THEN it is not visible from a repository that never received it
    assert request("HEAD", f"{server.url}/v1/other/repo/blobs/{digest}").status == 404
    # AND a session that claims the digest without sending the bytes cannot link it
    claim = request("POST", f"{server.url}/v1/other/repo/blobs/uploads/?digest={digest}&size={len(data)}").json()
    refused = request("PUT", f"{server.url}{claim['location']}?digest={digest}")
    assert refused.status == 400
    assert refused.error_codes == ["BLOB_UPLOAD_INVALID"]
    assert request("HEAD", f"{server.url}/v1/other/repo/blobs/{digest}").status == 404
    assert request("DELETE", f"{server.url}{claim['location']}").status == 204
    # AND a cross-repository mount links it where asked
    mounted = request("POST", f"{server.url}/v1/other/repo/blobs/uploads/?mount={digest}&from=vm/debian")
    assert mounted.status == 201
    assert request("HEAD", f"{server.url}/v1/other/repo/blobs/{digest}").status == 200


def test_multipart_push_resume_and_pull(server: RunningServer) -> None:
    # GIVEN a 12 MiB disk image uploaded in three parts, the second "lost" by an interrupted client
    data = os.urandom(2 * MIN_PART_SIZE + 2 * 1024 * 1024)
    chunks = [data[:MIN_PART_SIZE], data[MIN_PART_SIZE : 2 * MIN_PART_SIZE], data[2 * MIN_PART_SIZE :]]
    session = start_multipart(server.url, "images/fedora")
    urls = request("PATCH", f"{server.url}{session['location']}?part=1-3").json()["parts"]
    for index in (0, 2):
        assert request("PUT", urls[index]["url"], chunks[index]).status == 200
    # WHEN the client asks what the session holds
    status = request("GET", f"{server.url}{session['location']}")
    assert status.status == 200
    held = {p["number"]: p["size"] for p in status.json()["parts"]}
    assert held == {1: MIN_PART_SIZE, 3: len(chunks[2])}
    # AND completing now fails because part 2 is missing
    digest = digest_of(data)
    early = request("PUT", f"{server.url}{session['location']}?digest={digest}")
    assert early.status == 400
    assert early.json()["errors"][0]["detail"]["missing"] == [2]
    # WHEN it resumes by sending only the missing part, and completes
    again = request("PATCH", f"{server.url}{session['location']}?part=2").json()["parts"][0]
    assert request("PUT", again["url"], chunks[1]).status == 200
    done = request("PUT", f"{server.url}{session['location']}?digest={digest}")
    assert done.status == 201
    # THEN the blob pulls back byte for byte, and the session is gone
    assert pull_blob(server.url, "images/fedora", digest).body == data
    assert request("GET", f"{server.url}{session['location']}").status == 404


def test_inline_part_then_complete(server: RunningServer) -> None:
    # GIVEN a small blob sent as one inline part (no presigned URL needed)
    data = os.urandom(100_000)
    session = start_multipart(server.url, "small/chunks")
    patched = request("PATCH", f"{server.url}{session['location']}", data)
    assert patched.status == 202
    assert patched.json()["parts"] == [{"number": 1, "size": len(data), "etag": patched.json()["parts"][0]["etag"]}]
    # WHEN it is completed THEN the blob is whole
    done = request("PUT", f"{server.url}{session['location']}?digest={digest_of(data)}")
    assert done.status == 201
    assert pull_blob(server.url, "small/chunks", digest_of(data)).body == data


def test_small_parts_before_the_last_are_refused(server: RunningServer) -> None:
    # GIVEN two inline chunks, the first smaller than S3's 5 MiB minimum part
    data = os.urandom(100_000)
    session = start_multipart(server.url, "small/parts")
    assert request("PATCH", f"{server.url}{session['location']}", data[:60_000]).status == 202
    # WHEN the rest arrives with the completing PUT
    done = request("PUT", f"{server.url}{session['location']}?digest={digest_of(data)}", data[60_000:])
    # THEN it is refused with the parts named, as S3 would refuse it
    assert done.status == 400
    assert done.error_codes == ["BLOB_UPLOAD_INVALID"]
    assert done.json()["errors"][0]["detail"] == {"parts": [1]}
    assert request("HEAD", f"{server.url}/v1/small/parts/blobs/{digest_of(data)}").status == 404


def test_wrong_digest_never_becomes_visible(server: RunningServer) -> None:
    # GIVEN a multipart upload of some bytes
    data = os.urandom(200_000)
    claimed = digest_of(b"something else entirely")
    session = start_multipart(server.url, "trap/repo")
    send_parts(server.url, session, [data])
    # WHEN it is completed under a digest the bytes do not have
    reply = request("PUT", f"{server.url}{session['location']}?digest={claimed}")
    # THEN it is refused, nothing is visible under either digest, and the session is discarded
    assert reply.status == 400
    assert reply.error_codes == ["DIGEST_INVALID"]
    assert request("HEAD", f"{server.url}/v1/trap/repo/blobs/{claimed}").status == 404
    assert request("HEAD", f"{server.url}/v1/trap/repo/blobs/{digest_of(data)}").status == 404
    assert not (server.storage / "blobs" / "sha256" / claimed.removeprefix("sha256:")).exists()
    assert request("GET", f"{server.url}{session['location']}").status == 404


def test_single_put_with_wrong_body_is_refused_by_the_data_plane(server: RunningServer) -> None:
    data = os.urandom(50_000)
    digest = digest_of(data)
    started = request("POST", f"{server.url}/v1/trap/single/blobs/uploads/?digest={digest}&size={len(data)}").json()
    wrong = request("PUT", started["upload"]["url"], os.urandom(50_000))
    assert wrong.status == 400
    assert wrong.error_codes == ["DIGEST_INVALID"]
    incomplete = request("PUT", f"{server.url}{started['location']}?digest={digest}")
    assert incomplete.status == 400
    assert request("HEAD", f"{server.url}/v1/trap/single/blobs/{digest}").status == 404


def test_manifest_lifecycle(server: RunningServer) -> None:
    # GIVEN a config and a disk in a repository
    repo = "team/web-server"
    config = push_inline(server.url, repo, CONFIG)
    disk_data = os.urandom(64 * 1024)
    disk = push_inline(server.url, repo, disk_data)
    body = make_manifest((config, len(CONFIG)), [(disk, len(disk_data))])
    # WHEN the manifest is pushed under a tag
    put = put_manifest(server.url, repo, "v1.0", body)
    # THEN it is stored by digest and tag
    assert put.status == 201
    digest = digest_of(body)
    assert put.header("Docker-Content-Digest") == digest
    assert put.header("Location") == f"/v1/{repo}/manifests/{digest}"
    for reference in ("v1.0", digest):
        got = request("GET", f"{server.url}/v1/{repo}/manifests/{reference}", headers={"Accept": mediatypes.MANIFEST})
        assert got.status == 200
        assert got.body == body
        assert got.header("Content-Type") == mediatypes.MANIFEST
        assert got.header("Docker-Content-Digest") == digest
        head = request("HEAD", f"{server.url}/v1/{repo}/manifests/{reference}")
        assert head.status == 200
        assert head.header("Content-Length") == str(len(body))
    # AND an Accept header that excludes its type is refused, while plain JSON is accepted: every
    # manifest type is JSON (docs/api.md)
    refused = request("GET", f"{server.url}/v1/{repo}/manifests/v1.0", headers={"Accept": "text/html"})
    assert refused.status == 406
    assert refused.json()["errors"][0]["code"] == "NOT_ACCEPTABLE"
    as_json = request("GET", f"{server.url}/v1/{repo}/manifests/v1.0", headers={"Accept": "application/json"})
    assert (as_json.status, as_json.body) == (200, body)
    # WHEN more tags are added THEN tags list pages through them with a Link header
    for tag in ("v1.1", "latest"):
        assert put_manifest(server.url, repo, tag, body).status == 201
    first = request("GET", f"{server.url}/v1/{repo}/tags/list?n=2")
    assert first.json() == {"name": repo, "tags": ["latest", "v1.0"]}
    assert first.header("Link") == f'</v1/{repo}/tags/list?n=2&last=v1.0>; rel="next"'
    second = request("GET", f"{server.url}/v1/{repo}/tags/list?n=2&last=v1.0")
    assert second.json()["tags"] == ["v1.1"]
    assert second.header("Link") is None
    # AND the catalog lists the repository
    assert repo in request("GET", f"{server.url}/v1/_catalog").json()["repositories"]
    # WHEN a tag is deleted THEN only that tag goes
    assert request("DELETE", f"{server.url}/v1/{repo}/manifests/latest").status == 202
    assert request("GET", f"{server.url}/v1/{repo}/tags/list").json()["tags"] == ["v1.0", "v1.1"]
    # WHEN the manifest is deleted by digest THEN its tags go with it
    assert request("DELETE", f"{server.url}/v1/{repo}/manifests/{digest}").status == 202
    assert request("GET", f"{server.url}/v1/{repo}/manifests/v1.0").status == 404
    assert request("GET", f"{server.url}/v1/{repo}/tags/list").status == 404
    assert repo not in request("GET", f"{server.url}/v1/_catalog").json()["repositories"]


def test_manifest_by_digest_reference(server: RunningServer) -> None:
    repo = "bydigest/img"
    config = push_inline(server.url, repo, CONFIG)
    body = make_manifest((config, len(CONFIG)), [])
    assert put_manifest(server.url, repo, digest_of(body), body).status == 201
    assert request("GET", f"{server.url}/v1/{repo}/tags/list").json()["tags"] == []


def test_catalog_pagination(server: RunningServer) -> None:
    config = CONFIG
    for name in ("page/a", "page/b", "page/c"):
        digest = push_inline(server.url, name, config)
        assert put_manifest(server.url, name, "t", make_manifest((digest, len(config)), [])).status == 201
    names: list[str] = []
    last = ""
    while True:
        reply = request("GET", f"{server.url}/v1/_catalog?n=1" + (f"&last={last}" if last else ""))
        names += reply.json()["repositories"]
        if reply.header("Link") is None:
            break
        last = names[-1]
    assert [n for n in names if n.startswith("page/")] == ["page/a", "page/b", "page/c"]
    assert names == sorted(set(names))


def test_blob_delete(server: RunningServer) -> None:
    digest = push_inline(server.url, "del/repo", b"bytes to delete")
    assert request("DELETE", f"{server.url}/v1/del/repo/blobs/{digest}").status == 202
    assert request("HEAD", f"{server.url}/v1/del/repo/blobs/{digest}").status == 404
    assert request("DELETE", f"{server.url}/v1/del/repo/blobs/{digest}").status == 404


def test_upload_cancel(server: RunningServer) -> None:
    session = start_multipart(server.url, "cancel/repo")
    send_parts(server.url, session, [os.urandom(1000)])
    assert request("DELETE", f"{server.url}{session['location']}").status == 204
    assert request("GET", f"{server.url}{session['location']}").status == 404
    assert not (server.storage / "uploads" / session["uuid"]).exists()


def test_multipart_blob_pulled_with_ranges(server: RunningServer) -> None:
    data = os.urandom(MIN_PART_SIZE + 4096)
    digest = push_multipart(server.url, "ranges/repo", data, MIN_PART_SIZE)
    tail = pull_blob(server.url, "ranges/repo", digest, f"bytes={MIN_PART_SIZE}-")
    assert tail.status == 206
    assert tail.body == data[MIN_PART_SIZE:]
    assert tail.header("Content-Range") == f"bytes {MIN_PART_SIZE}-{len(data) - 1}/{len(data)}"


def test_concurrent_uploads_of_one_blob_are_safe(server: RunningServer) -> None:
    # GIVEN six clients pushing the same 6 MiB blob at once, through both upload modes
    data = os.urandom(6 * 1024 * 1024)
    results: list[str] = []
    errors: list[BaseException] = []

    def push(index: int) -> None:
        try:
            if index % 2:
                results.append(push_single(server.url, "race/blob", data))
            else:
                results.append(push_multipart(server.url, "race/blob", data, MIN_PART_SIZE))
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN every push succeeded, and the stored blob is exactly the data
    assert errors == []
    assert results == [digest_of(data)] * 6
    assert pull_blob(server.url, "race/blob", digest_of(data)).body == data
    assert not list((server.storage / ".tmp").iterdir())


def test_every_request_is_logged_as_json(server: RunningServer) -> None:
    # GIVEN a request with a recognisable path
    request("GET", f"{server.url}/v1/log/probe/tags/list")
    # THEN the server's (non-terminal) output has a JSON access line for it
    # (written just after the response is sent, so wait for it a little)
    entries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not entries and time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        entries = [e for e in lines if e.get("path") == "/v1/log/probe/tags/list"]
        time.sleep(0.05)
    assert entries, "the request was not logged"
    entry = entries[-1]
    assert entry["method"] == "GET"
    assert entry["status"] == 404
    assert entry["duration_ms"] >= 0
    assert entry["logger"] == "vmregistry.local.access"


def test_sweep_discards_stale_sessions_and_orphaned_data(tmp_path: Path) -> None:
    server = start_server(tmp_path)  # its own storage: other tests leave sessions open
    try:
        _sweep_scenario(server)
    finally:
        stop_server(server)


def _sweep_scenario(server: RunningServer) -> None:
    # GIVEN an open session, and multipart data whose session file was lost
    data = os.urandom(10_000)
    stale = start_multipart(server.url, "sweep/repo")
    send_parts(server.url, stale, [data])
    orphan = server.storage / "uploads" / "0123abcd-0000-4000-8000-000000000000" / "data"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(data)
    # WHEN uploads older than zero hours are swept
    swept = subprocess.run(
        [VMREGISTRY, "sweep-uploads", "-older-than", "0", "-fs-path", str(server.storage)],
        capture_output=True,
        text=True,
        check=True,
    )
    # THEN both are gone, and the session reads as unknown
    assert "discarded 1 upload session(s), 1 orphaned upload object(s)" in swept.stdout
    assert not (server.storage / "uploads").exists()
    assert request("GET", f"{server.url}{stale['location']}").status == 404


def test_presigned_urls_use_the_address_the_client_used(server: RunningServer) -> None:
    # GIVEN a server with no configured public URL, reached under another name
    digest = push_inline(server.url, "origin/repo", b"where am I")
    port = server.url.rsplit(":", 1)[1]
    # WHEN a client asks for the blob through that name
    aliased = request("GET", f"{server.url}/v1/origin/repo/blobs/{digest}", headers={"Host": f"localhost:{port}"})
    # THEN the redirect sends it to the same name, and the URL works there
    location = aliased.header("Location")
    assert location is not None
    assert location.startswith(f"http://localhost:{port}/_data/get?")
    assert request("GET", location).body == b"where am I"
    # AND a Host header that is not a host falls back to the server's own URL
    odd = request("GET", f"{server.url}/v1/origin/repo/blobs/{digest}", headers={"Host": "evil/../x"})
    assert (odd.header("Location") or "").startswith(server.url + "/_data/")


def test_racing_single_puts_of_one_blob_both_link_after_resending(server: RunningServer) -> None:
    # GIVEN two sessions uploading the same blob, B's PUT landing after A's
    data = os.urandom(20_000)
    digest = digest_of(data)
    query = f"?digest={digest}&size={len(data)}"
    a = request("POST", f"{server.url}/v1/race/a/blobs/uploads/{query}").json()
    b = request("POST", f"{server.url}/v1/race/b/blobs/uploads/{query}").json()
    assert request("PUT", a["upload"]["url"], data).status == 200
    assert request("PUT", b["upload"]["url"], data).status == 200
    # WHEN A completes THEN it is told to send again (the stored bytes carry B's marker)
    first = request("PUT", f"{server.url}{a['location']}?digest={digest}")
    assert first.status == 400
    assert "again" in first.json()["errors"][0]["message"]
    # AND after resending, each completes and each repository holds the blob
    assert request("PUT", a["upload"]["url"], data).status == 200
    assert request("PUT", f"{server.url}{a['location']}?digest={digest}").status == 201
    assert request("PUT", b["upload"]["url"], data).status == 200
    assert request("PUT", f"{server.url}{b['location']}?digest={digest}").status == 201
    for repo in ("race/a", "race/b"):
        assert pull_blob(server.url, repo, digest).body == data
