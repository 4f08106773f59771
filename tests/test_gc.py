"""Garbage collection frees what no manifest references, and nothing a push still needs.

Through the real CLI against a running server (the issue's report: an image
deleted by tag and digest, then ``vmregistry gc -grace 0``, freed nothing), in
the domain layer on every backend, and with forced interleavings for the
races with pushes (the technique of ``test_registry_tags.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from vmregistry import mediatypes, paths
from vmregistry.digests import digest_of
from vmregistry.errors import RegistryError
from vmregistry.registry import BlobInfo, Registry
from vmregistry.registry.body import Body
from vmregistry.registry.gc import collect_garbage
from vmregistry.registry.manifests import tag_record, twin_of
from vmregistry.storage import ObjectInfo, Storage
from vmregistry.storage.filesystem import FilesystemStorage

from tests.backends import backend
from tests.conftest import VMREGISTRY, RunningServer
from tests.httpclient import request
from tests.registry_flows import make_manifest, push_inline, put_manifest

__all__ = ["backend"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def gc(server: RunningServer, *args: str) -> str:
    result = subprocess.run(
        [VMREGISTRY, "gc", "-fs-path", str(server.storage), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def push_image(url: str, repo: str, tag: str, config: bytes, disk: bytes) -> str:
    """Blobs, then a manifest naming them; the manifest's digest."""
    config_digest = push_inline(url, repo, config)
    disk_digest = push_inline(url, repo, disk)
    body = make_manifest((config_digest, len(config)), [(disk_digest, len(disk))])
    assert put_manifest(url, repo, tag, body).status == 201
    return digest_of(body)


def blob_exists(server: RunningServer, data: bytes) -> bool:
    return (server.storage / paths.blob_key(digest_of(data))).exists()


# -- as a user meets it: the CLI against a running registry ------------------------------------


def test_deleting_an_image_then_gc_frees_its_blobs(server: RunningServer) -> None:
    # GIVEN an image, and a second image in another repository sharing its config
    config, disk, other_disk = b'{"cpus": 2}', os.urandom(3000), os.urandom(1000)
    digest = push_image(server.url, "gc/vm", "24.04", config, disk)
    push_image(server.url, "gc/other", "1", config, other_disk)
    # WHEN the image's tag and then its manifest are deleted
    assert request("DELETE", f"{server.url}/v1/gc/vm/manifests/24.04").status == 202
    assert request("DELETE", f"{server.url}/v1/gc/vm/manifests/{digest}").status == 202
    # THEN within the grace period nothing is freed
    assert "deleted 0 blob(s)" in gc(server, "--settle", "0")
    assert blob_exists(server, disk)
    # AND a dry run without grace names the disk only (the config is still another image's)
    dry = gc(server, "--grace", "0", "--settle", "0", "--dry-run")
    assert f"would delete {digest_of(disk)}" in dry
    assert digest_of(config) not in dry
    assert blob_exists(server, disk)
    # WHEN collected for real THEN the disk's bytes are gone, its link too, and the other image pulls
    out = gc(server, "--grace", "0", "--settle", "0")
    assert "deleted 1 blob(s), 3000 bytes" in out
    assert not blob_exists(server, disk)
    assert request("HEAD", f"{server.url}/v1/gc/vm/blobs/{digest_of(disk)}").status == 404
    assert request("HEAD", f"{server.url}/v1/gc/other/blobs/{digest_of(config)}").status == 200
    assert request("GET", f"{server.url}/v1/gc/other/manifests/1").status == 200


def test_delete_untagged_frees_an_image_a_tag_moved_away_from(server: RunningServer) -> None:
    # GIVEN a tag pushed twice: the first manifest is now untagged
    old_disk, new_disk = os.urandom(2000), os.urandom(2500)
    old = push_image(server.url, "gc/moved", "latest", b'{"v": 1}', old_disk)
    push_image(server.url, "gc/moved", "latest", b'{"v": 2}', new_disk)
    # WHEN gc runs without --delete-untagged THEN the untagged image is kept (pullable by digest)
    assert "deleted 0 blob(s)" in gc(server, "--grace", "0", "--settle", "0")
    assert request("GET", f"{server.url}/v1/gc/moved/manifests/{old}").status == 200
    # WHEN it runs with --delete-untagged THEN the old manifest and its blobs go, the tagged image stays
    out = gc(server, "--grace", "0", "--settle", "0", "--delete-untagged")
    assert f"deleted manifest gc/moved@{old}" in out
    assert request("GET", f"{server.url}/v1/gc/moved/manifests/{old}").status == 404
    assert not blob_exists(server, old_disk)
    assert blob_exists(server, new_disk)
    assert request("GET", f"{server.url}/v1/gc/moved/manifests/latest").status == 200


# -- the domain layer, on every backend ---------------------------------------------------------


def _push(registry: Registry, repo: str, tag: str | None, *blobs: bytes) -> str:
    digests = [digest_of(b) for b in blobs]
    for data, digest in zip(blobs, digests, strict=True):
        registry.blobs.put_inline(repo, digest, data)
    body = make_manifest(
        (digests[0], len(blobs[0])), [(d, len(b)) for d, b in zip(digests[1:], blobs[1:], strict=True)]
    )
    manifest = registry.manifests.put(repo, tag or digest_of(body), body, mediatypes.MANIFEST)
    return manifest.digest


def _index(registry: Registry, repo: str, tag: str, children: list[str], subject: str | None = None) -> str:
    """An OCI index (or, with ``subject``, a referrer) written as /v2 stores it."""
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": mediatypes.MANIFEST, "digest": c, "size": 1} for c in children],
    }
    if subject is not None:
        document["subject"] = {"mediaType": mediatypes.MANIFEST, "digest": subject, "size": 1}
    body = json.dumps(document).encode()
    digest = digest_of(body)
    registry.storage.write(paths.manifest_key(repo, digest), body)
    if tag:
        registry.storage.write(paths.tag_key(repo, tag), tag_record(digest, body))
    return digest


def test_untagged_collection_keeps_index_children_and_referrers(backend: Storage) -> None:
    registry = Registry(backend)
    # GIVEN a tagged index of two untagged images, a referrer of one of them, and an orphan image
    a = _push(registry, "multi/arch", None, b"config-a", b"disk-a")
    b = _push(registry, "multi/arch", None, b"config-b", b"disk-b")
    orphan = _push(registry, "multi/arch", None, b"config-c", b"disk-c")
    _index(registry, "multi/arch", "v1", [a, b])
    referrer = _index(registry, "multi/arch", "", [], subject=a)
    spellings = [orphan, digest_of(twin_of(registry.storage.read(paths.manifest_key("multi/arch", orphan))) or b"")]
    # WHEN collected with --delete-untagged and no grace
    report = collect_garbage(backend, grace=0, delete_untagged=True, settle=0)
    # THEN only the orphan (in both its spellings: docs/oci.md) and its blobs go; children and the
    # referrer of a kept child stay
    assert report.manifests_deleted == sorted(f"multi/arch@{digest}" for digest in spellings)
    assert sorted(report.deleted) == sorted([digest_of(b"config-c"), digest_of(b"disk-c")])
    for kept in (a, b, referrer):
        assert registry.manifests.get("multi/arch", kept).digest == kept
    assert registry.blobs.find("multi/arch", digest_of(b"disk-b")) is not None
    backend.delete_prefix("")


def test_nothing_referenced_is_collected_and_the_catalog_follows(backend: Storage) -> None:
    registry = Registry(backend)
    # GIVEN an image, and a blob whose only manifest was deleted
    kept = _push(registry, "gc/keep", "1", b"cfg", b"disk")
    gone = _push(registry, "gc/gone", "1", b"cfg2", b"disk2")
    registry.manifests.delete("gc/gone", gone)
    # WHEN collected THEN the deleted image's blobs and links go, the kept one's stay
    report = collect_garbage(backend, grace=0, settle=0)
    assert sorted(report.deleted) == sorted([digest_of(b"cfg2"), digest_of(b"disk2")])
    assert report.links_deleted == 2
    assert registry.blobs.find("gc/keep", digest_of(b"disk")) is not None
    assert registry.manifests.repositories() == ["gc/keep"]
    registry.manifests.delete("gc/keep", kept)
    report = collect_garbage(backend, grace=0, settle=0)
    assert list(backend.list("")) == []


def test_a_blobs_zero_record_is_collected_with_it(backend: Storage) -> None:
    registry = Registry(backend)
    # GIVEN a blob uploaded in placed parts, its second part declared zeros (so the registry records its zeros)
    data = os.urandom(5 * 1024 * 1024)
    content = data + bytes(6 * 1024 * 1024)
    status = registry.uploads.start("gc/sparse", size=len(content), mode="multipart", part_size=len(data))
    assert not isinstance(status, BlobInfo)
    upload = status.session.uuid
    registry.uploads.put_parts("gc/sparse", upload, "1", Body(data))
    registry.uploads.put_parts("gc/sparse", upload, None, zero=f"2:{len(data)}:{6 * 1024 * 1024}")
    digest = digest_of(content)
    registry.uploads.complete("gc/sparse", upload, digest)
    assert backend.read(paths.zeros_key(digest)) == b"5242880+6291456"
    # AND a record whose blob never appeared (an upload that died between the two)
    orphan = digest_of(b"never published")
    backend.write(paths.zeros_key(orphan), b"0+10")
    # WHEN the blob is no longer referenced and gc runs
    registry.blobs.delete("gc/sparse", digest)
    report = collect_garbage(backend, grace=0, settle=0)
    # THEN the blob goes, and its record with it, and the orphaned record too
    assert report.deleted == [digest]
    backend.delete_prefix(paths.FILL_PREFIX)  # the S3 backend's all-zero sources are not garbage
    assert list(backend.list("")) == []


# -- races with pushes, forced ---------------------------------------------------------------


class InterleavingStorage(FilesystemStorage):
    """Runs ``before[key]()`` just before ``key`` is written, once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.before: dict[str, Callable[[], None]] = {}

    def write(self, key: str, data: bytes, *, sha256: str | None = None) -> ObjectInfo:
        hook = self.before.pop(key, None)
        if hook is not None:
            hook()
        return super().write(key, data, sha256=sha256)


def _age(storage: FilesystemStorage, *keys: str) -> None:
    """Make objects look as old as an upload abandoned yesterday."""
    for key in keys:
        os.utime(storage.path(key), (1_000_000, 1_000_000))


def test_a_blob_uploaded_but_not_yet_referenced_survives(tmp_path: Path) -> None:
    # GIVEN a blob just uploaded, its manifest not pushed yet
    storage = InterleavingStorage(tmp_path)
    registry = Registry(storage)
    registry.blobs.put_inline("race/img", digest_of(b"cfg"), b"cfg")
    # WHEN gc runs now, with the default grace period THEN it spares the blob and its link
    report = collect_garbage(storage, settle=0)
    assert report.deleted == []
    assert report.links_deleted == 0
    # AND the manifest push that follows succeeds
    body = make_manifest((digest_of(b"cfg"), 3), [])
    assert registry.manifests.put("race/img", "1", body, mediatypes.MANIFEST).digest == digest_of(body)


def test_an_abandoned_blob_is_collected_and_a_late_manifest_is_refused(tmp_path: Path) -> None:
    # GIVEN a blob uploaded long ago and never referenced
    storage = InterleavingStorage(tmp_path)
    registry = Registry(storage)
    registry.blobs.put_inline("race/img", digest_of(b"cfg"), b"cfg")
    _age(storage, paths.blob_key(digest_of(b"cfg")), paths.layer_key("race/img", digest_of(b"cfg")))
    # WHEN gc runs THEN it is freed
    assert collect_garbage(storage, settle=0).deleted == [digest_of(b"cfg")]
    # AND a manifest naming it is refused: never a manifest without its blob
    with pytest.raises(RegistryError) as refused:
        registry.manifests.put("race/img", "1", make_manifest((digest_of(b"cfg"), 3), []), mediatypes.MANIFEST)
    assert refused.value.code == "MANIFEST_BLOB_UNKNOWN"


def test_gc_between_a_manifests_validation_and_its_write_keeps_the_blob(tmp_path: Path) -> None:
    # GIVEN an old, unreferenced blob, and a manifest push that has validated its link
    storage = InterleavingStorage(tmp_path)
    registry = Registry(storage)
    registry.blobs.put_inline("race/img", digest_of(b"cfg"), b"cfg")
    _age(storage, paths.blob_key(digest_of(b"cfg")), paths.layer_key("race/img", digest_of(b"cfg")))
    body = make_manifest((digest_of(b"cfg"), 3), [])
    settling, pushed = threading.Event(), threading.Event()
    reports = []

    def settle() -> None:  # gc's settle: it waits here while the push finishes
        settling.set()
        assert pushed.wait(30)

    collector = threading.Thread(target=lambda: reports.append(collect_garbage(storage, grace=0, wait=settle)))

    def collect_now() -> None:  # runs inside the push, after validation, before the manifest is written
        collector.start()
        assert settling.wait(30)  # gc has deleted the link and is settling

    storage.before[paths.manifest_key("race/img", digest_of(body))] = collect_now
    # WHEN gc deletes the link in that window and the push then writes its manifest
    registry.manifests.put("race/img", "1", body, mediatypes.MANIFEST)
    pushed.set()
    collector.join(30)
    # THEN gc's second mark saw the manifest: the link is restored and the blob kept
    assert reports[0].links_deleted == 1
    assert reports[0].links_restored == 1
    assert reports[0].deleted == []
    assert registry.blobs.find("race/img", digest_of(b"cfg")) is not None
    assert storage.read(paths.blob_key(digest_of(b"cfg"))) == b"cfg"


# -- the scheduled worker (AWS) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "deletes"),
    [
        ({}, False),  # a rule without input: report only
        ({"dryRun": False, "graceHours": "0"}, False),  # a malformed grace: report only
        ({"dryRun": False, "graceHours": 0, "settleSeconds": 0}, True),
    ],
)
def test_the_scheduled_worker_deletes_only_when_told_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, event: dict[str, object], deletes: bool
) -> None:
    import importlib

    from vmregistry import runtime
    from vmregistry.local.events import LambdaContext

    # GIVEN a registry holding an unreferenced blob, and the worker as Lambda runs it
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    registry = Registry(FilesystemStorage(tmp_path))
    registry.blobs.put_inline("gc/worker", digest_of(b"orphan"), b"orphan")
    runtime.configure(registry)
    handler = importlib.import_module("vmregistry_functions.garbage_collect").lambda_handler
    # WHEN the schedule invokes it with this event
    summary = handler(event, LambdaContext("garbage_collect", "r"))
    # THEN it deletes only for an explicit, well-formed request to
    assert summary["dryRun"] is not deletes
    assert (registry.storage.stat(paths.blob_key(digest_of(b"orphan"))) is None) is deletes
