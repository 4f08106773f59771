"""What a request costs is bounded whatever the client lists (issue 19), on every backend.

A manifest PUT looks each *distinct* blob up once, concurrently but never
more than :data:`~vmregistry.registry.references.LOOKUPS` at a time, and a
document over the cap is refused before any lookup; a page of referrers and
the chunks an OCI upload keeps waiting are bounded too. Storage is the real
backend; the tests only count and time the calls it receives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from vmregistry import mediatypes, paths
from vmregistry.errors import RegistryError
from vmregistry.oci import mediatypes as mt
from vmregistry.oci.manifests import MAX_DESCRIPTORS
from vmregistry.registry import Registry
from vmregistry.registry.appends import MAX_WAITING
from vmregistry.registry.body import Body
from vmregistry.registry.references import LOOKUPS
from vmregistry.registry.referrers import MAX_PAGE
from vmregistry.storage import Storage

from tests.backends import backend  # noqa: F401 - the fixture
from tests.registry_flows import digest_of

REPO = "costs/vm"


def _layer(digest: str) -> dict[str, Any]:
    return {"mediaType": mediatypes.DISK, "digest": digest, "size": 1}


def _manifest(layers: list[dict[str, Any]]) -> bytes:
    config = {"mediaType": mediatypes.CONFIG, "digest": digest_of(b"c"), "size": 1}
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.MANIFEST, "config": config, "layers": layers}
    ).encode()


@contextmanager
def _watching_reads(storage: Storage, delay: float = 0.0) -> Iterator[dict[str, Any]]:
    """Count the reads storage receives, and the most in flight at once (each held ``delay`` seconds)."""
    seen: dict[str, Any] = {"keys": [], "in_flight": 0, "most": 0}
    lock = threading.Lock()
    read: Callable[..., bytes] = storage.read

    def counted(key: str, *args: Any, **kwargs: Any) -> bytes:
        with lock:
            seen["keys"].append(key)
            seen["in_flight"] += 1
            seen["most"] = max(seen["most"], seen["in_flight"])
        try:
            time.sleep(delay)
            return read(key, *args, **kwargs)
        finally:
            with lock:
                seen["in_flight"] -= 1

    storage.read = counted  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del storage.read


def _link(storage: Storage, *digests: str) -> None:
    for digest in digests:
        storage.write(paths.layer_key(REPO, digest), b"1")


def test_one_lookup_per_distinct_blob(backend: Storage) -> None:  # noqa: F811
    registry = Registry(backend)
    # GIVEN a manifest listing the config and one disk 4,000 times, both in the repository
    disk = digest_of(b"d")
    _link(backend, digest_of(b"c"), disk)
    body = _manifest([_layer(disk)] * 4000)
    # WHEN it is pushed
    with _watching_reads(backend) as seen:
        registry.manifests.put(REPO, "v1", body, mediatypes.MANIFEST)
    # THEN each distinct blob's link was read once: its existence and its size in one round trip
    links = [key for key in seen["keys"] if "/_layers/" in key]
    assert sorted(links) == sorted(paths.layer_key(REPO, d) for d in (digest_of(b"c"), disk))
    backend.delete_prefix("")


def test_lookups_run_concurrently_within_the_bound(backend: Storage) -> None:  # noqa: F811
    registry = Registry(backend)
    # GIVEN a manifest of 100 distinct disks, every one in the repository, and storage answering in 20 ms
    disks = [digest_of(str(i).encode()) for i in range(100)]
    _link(backend, digest_of(b"c"), *disks)
    body = _manifest([_layer(d) for d in disks])
    # WHEN it is pushed
    started = time.perf_counter()
    with _watching_reads(backend, delay=0.02) as seen:
        registry.manifests.put(REPO, "v1", body, mediatypes.MANIFEST)
    elapsed = time.perf_counter() - started
    # THEN lookups overlapped, never more than the bound at once
    assert seen["most"] == LOOKUPS
    assert elapsed < 101 * 0.02 / 2, elapsed
    backend.delete_prefix("")


def test_missing_blobs_are_named_and_nothing_is_stored(backend: Storage) -> None:  # noqa: F811
    registry = Registry(backend)
    disks = [digest_of(str(i).encode()) for i in range(150)]
    _link(backend, digest_of(b"c"), *disks[:30])
    with pytest.raises(RegistryError) as caught:
        registry.manifests.put(REPO, "v1", _manifest([_layer(d) for d in disks]), mediatypes.MANIFEST)
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
    assert caught.value.detail == {"digests": sorted(disks[30:])[:100], "count": 120}
    assert not list(backend.list(paths.manifests_prefix(REPO)))
    backend.delete_prefix("")


def test_the_cap_is_refused_before_any_lookup(tmp_path: Any) -> None:
    from vmregistry.storage.filesystem import FilesystemStorage

    storage = FilesystemStorage(tmp_path)
    registry = Registry(storage)
    # GIVEN manifests and indexes one descriptor over the cap
    over = MAX_DESCRIPTORS + 1
    manifest = _manifest([_layer(digest_of(str(i).encode())) for i in range(over)])
    child = {"mediaType": mt.OCI_MANIFEST, "digest": digest_of(b"m"), "size": 1}
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [child] * over}).encode()
    for body, form, media_type in ((manifest, "seed", mediatypes.MANIFEST), (index, "oci", mt.OCI_INDEX)):
        # WHEN pushed THEN 400 MANIFEST_INVALID names the cap and the count, and storage was not asked
        with _watching_reads(storage) as seen, pytest.raises(RegistryError) as caught:
            registry.manifests.put(REPO, "v1", body, media_type, form=form)  # type: ignore[arg-type]
        assert caught.value.code == "MANIFEST_INVALID"
        assert caught.value.detail == {"limit": MAX_DESCRIPTORS, "count": over}
        assert str(MAX_DESCRIPTORS) in caught.value.message
        assert seen["keys"] == []


def test_an_index_needs_its_manifests_in_the_repository(tmp_path: Any) -> None:
    from vmregistry.storage.filesystem import FilesystemStorage

    storage = FilesystemStorage(tmp_path)
    registry = Registry(storage)
    present = _manifest([])
    storage.write(paths.manifest_key(REPO, digest_of(present)), present)
    children = [
        {"mediaType": mediatypes.MANIFEST, "digest": digest_of(present), "size": len(present)},
        {"mediaType": mt.OCI_MANIFEST, "digest": digest_of(b"absent"), "size": 6},
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children}).encode()
    with pytest.raises(RegistryError) as caught:
        registry.manifests.put(REPO, "multi", index, mt.OCI_INDEX, form="oci")
    assert caught.value.code == "MANIFEST_BLOB_UNKNOWN"
    assert caught.value.detail == {"digests": [digest_of(b"absent")], "count": 1}


def test_referrers_come_a_bounded_page_at_a_time(tmp_path: Any) -> None:
    from vmregistry.storage.filesystem import FilesystemStorage

    storage = FilesystemStorage(tmp_path)
    registry = Registry(storage)
    # GIVEN more referrers of one subject than a page holds
    subject = digest_of(b"subject")
    referrers = sorted(digest_of(str(i).encode()) for i in range(MAX_PAGE + 44))
    for digest in referrers:
        entry = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": 1, "artifactType": "application/x"}
        storage.write(paths.referrer_key(REPO, subject, digest), json.dumps(entry).encode())
    # WHEN listed THEN a full page says where the next starts, and the next holds the rest
    first = registry.manifests.referrers.page(REPO, subject, None, None)
    assert [d["digest"] for d in first.descriptors] == referrers[:MAX_PAGE]
    assert first.next_last == referrers[MAX_PAGE - 1]
    second = registry.manifests.referrers.page(REPO, subject, None, first.next_last)
    assert [d["digest"] for d in second.descriptors] == referrers[MAX_PAGE:]
    assert second.next_last is None


def test_tiny_chunks_are_merged_so_no_request_lists_thousands(tmp_path: Any) -> None:
    from vmregistry.storage.filesystem import FilesystemStorage

    storage = FilesystemStorage(tmp_path)
    registry = Registry(storage)
    # GIVEN an OCI upload receiving one-byte chunks
    session = registry.uploads.start(REPO, appends=True)
    upload_id = session.session.uuid  # type: ignore[union-attr]
    data = bytes(range(256)) * 2
    for offset, byte in enumerate(data):
        progress = registry.appends.append(REPO, upload_id, Body(bytes([byte])), f"{offset}-{offset}", 1)
        # THEN at most MAX_WAITING chunks ever wait, however many arrived
        assert len(progress.chunks) <= MAX_WAITING
        assert progress.received == offset + 1
    # AND the blob they make is exactly the bytes sent
    blob = registry.appends.finish(REPO, upload_id, digest_of(data))
    assert storage.read(paths.blob_key(blob.digest)) == data


def test_a_v2_upload_grows_only_as_far_as_the_deployment_verifies_in_time(tmp_path: Any) -> None:
    import dataclasses

    from vmregistry.config import Settings
    from vmregistry.storage.filesystem import FilesystemStorage

    # GIVEN a deployment whose requests are cut short (the stack sets oci_upload_limit)
    registry = Registry(FilesystemStorage(tmp_path), dataclasses.replace(Settings(), oci_upload_limit=1000))
    upload_id = registry.uploads.start(REPO, appends=True).session.uuid  # type: ignore[union-attr]
    registry.appends.append(REPO, upload_id, Body(bytes(600)), "0-599", 600)
    # WHEN a chunk would take the upload past it, THEN 413 names the limit, before anything is stored
    with pytest.raises(RegistryError) as caught:
        registry.appends.admit(REPO, upload_id, "600-1199", 600)
    assert caught.value.code == "TOO_LARGE"
    assert caught.value.detail == {"limit": 1000, "size": 1200}
    assert registry.appends.progress(REPO, upload_id).received == 600
