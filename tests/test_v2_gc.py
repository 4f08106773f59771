"""Garbage collection and the documents /v2 brings: a VM image's two spellings, referrers, indexes.

A VM image is stored in both spellings (docs/oci.md); collection keeps both
while either is kept and frees both, with their blobs, once neither is. The
registry is the real domain layer on the filesystem backend.
"""

from __future__ import annotations

import json
from pathlib import Path

from vmregistry import mediatypes, paths
from vmregistry.oci import mediatypes as mt
from vmregistry.registry import Registry
from vmregistry.registry.gc import collect_garbage
from vmregistry.registry.manifests import twin_of
from vmregistry.storage.filesystem import FilesystemStorage

from tests.registry_flows import digest_of, make_manifest

REPO = "gc/vm"


def _image(registry: Registry) -> bytes:
    config, disk = b'{"os":"linux"}', b"disk bytes"
    for blob in (config, disk):
        registry.blobs.put_inline(REPO, digest_of(blob), blob)
    document = json.loads(make_manifest((digest_of(config), len(config)), [(digest_of(disk), len(disk))]))
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_both_spellings_of_a_vm_image_live_and_go_together(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path)
    registry = Registry(storage)
    # GIVEN a VM image pushed through /v1 under a tag, so its OCI form is an untagged manifest
    seed = _image(registry)
    registry.manifests.put(REPO, "1", seed, mediatypes.MANIFEST)
    oci = twin_of(seed)
    assert oci is not None
    # WHEN collected with --delete-untagged THEN the untagged OCI form stays: its twin is tagged
    report = collect_garbage(storage, grace=0, delete_untagged=True, settle=0)
    assert report.manifests_deleted == []
    assert report.deleted == []
    assert registry.manifests.get(REPO, digest_of(oci), "oci").data == oci
    # WHEN the tag goes and collection runs again THEN both spellings and both blobs go
    registry.manifests.delete(REPO, "1")
    report = collect_garbage(storage, grace=0, delete_untagged=True, settle=0)
    assert sorted(report.manifests_deleted) == sorted(f"{REPO}@{d}" for d in (digest_of(seed), digest_of(oci)))
    assert len(report.deleted) == 2
    assert list(storage.list(paths.REPOSITORIES_PREFIX)) == []


def test_a_referrer_of_a_kept_image_is_kept_and_its_entry_follows_its_delete(tmp_path: Path) -> None:
    storage = FilesystemStorage(tmp_path)
    registry = Registry(storage)
    # GIVEN a tagged OCI form of a VM image and an untagged referrer of it (pushed through /v2)
    oci = twin_of(_image(registry))
    assert oci is not None
    registry.manifests.put(REPO, "1", oci, mt.OCI_MANIFEST, form="oci")
    empty = b"{}"
    registry.blobs.put_inline(REPO, digest_of(empty), empty)
    referrer = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": digest_of(empty), "size": 2},
            "layers": [],
            "subject": {"mediaType": mt.OCI_MANIFEST, "digest": digest_of(oci), "size": len(oci)},
        }
    ).encode()
    registry.manifests.put(REPO, digest_of(referrer), referrer, mt.OCI_MANIFEST, form="oci")
    # WHEN collected with --delete-untagged THEN the referrer of the kept image stays, and its blob
    report = collect_garbage(storage, grace=0, delete_untagged=True, settle=0)
    assert report.manifests_deleted == []
    page = registry.manifests.referrers.page(REPO, digest_of(oci), None, None)
    assert [d["digest"] for d in page.descriptors] == [digest_of(referrer)]
    # WHEN the referrer is deleted THEN its entry goes with it
    registry.manifests.delete(REPO, digest_of(referrer))
    assert registry.manifests.referrers.page(REPO, digest_of(oci), None, None).descriptors == []
    assert list(storage.list(paths.referrers_prefix(REPO, digest_of(oci)))) == []
