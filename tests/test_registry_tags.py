"""Tag writes in the domain layer, on every storage backend.

Re-pushing a tag with the manifest it already holds must not rewrite it (a
durable write costs an fsync or an S3 PUT; CI pipelines re-tag constantly),
and anything else must.
"""

from __future__ import annotations

import json

from vmregistry import mediatypes, paths
from vmregistry.registry import Registry
from vmregistry.registry.blobs import sha256_digest
from vmregistry.storage import Storage

from tests.backends import backend
from tests.registry_flows import make_manifest

__all__ = ["backend"]

REPO = "tags/img"


def _manifest(registry: Registry, cpus: int) -> bytes:
    config = json.dumps({"cpus": cpus}).encode()
    registry.blobs.put_inline(REPO, sha256_digest(config), config)
    return make_manifest((sha256_digest(config), len(config)), [])


def _cleanup(registry: Registry, *digests: str) -> None:
    for digest in digests:
        registry.manifests.delete(REPO, digest)
    for key in list(registry.storage.list("")):
        registry.storage.delete(key)


def test_unchanged_tag_is_not_rewritten_and_a_changed_one_is(backend: Storage) -> None:
    registry = Registry(backend)
    first, second = _manifest(registry, 1), _manifest(registry, 2)
    tag_key = paths.manifest_key(REPO, "latest")
    registry.manifests.put(REPO, "latest", first, mediatypes.MANIFEST)
    written = backend.stat(tag_key)
    assert written is not None
    # WHEN the same manifest is pushed to the same tag again THEN the stored object is untouched
    registry.manifests.put(REPO, "latest", first, mediatypes.MANIFEST)
    assert backend.stat(tag_key) == written
    # WHEN another manifest is pushed to the tag THEN the tag moves to it
    registry.manifests.put(REPO, "latest", second, mediatypes.MANIFEST)
    assert registry.manifests.get(REPO, "latest").data == second
    # WHEN the first comes back THEN the tag follows (a known manifest is still compared, not assumed)
    registry.manifests.put(REPO, "latest", first, mediatypes.MANIFEST)
    assert registry.manifests.get(REPO, "latest").data == first
    # AND a known manifest pushed to a new tag is written there
    registry.manifests.put(REPO, "stable", first, mediatypes.MANIFEST)
    assert registry.manifests.get(REPO, "stable").data == first
    _cleanup(registry, sha256_digest(first), sha256_digest(second))
