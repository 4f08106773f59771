"""Tag writes and deletes by digest in the domain layer.

Re-pushing a tag with the manifest it already holds must not rewrite it (a
durable write costs an fsync or an S3 PUT; CI pipelines re-tag constantly),
and anything else must. A delete by digest racing a tag push must not leave
a tag whose manifest is gone, and an interrupted delete must be finishable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PosixPath

import pytest
from vmregistry import mediatypes, paths
from vmregistry.digests import digest_of as sha256_digest
from vmregistry.errors import RegistryError
from vmregistry.registry import Registry
from vmregistry.storage import ObjectInfo, Storage
from vmregistry.storage.filesystem import FilesystemStorage

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
    tag_key = paths.tag_key(REPO, "latest")
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


class _Interleaving(FilesystemStorage):
    """A real filesystem backend that runs another request just before one chosen write."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.before: dict[str, Callable[[], None]] = {}

    def write(self, key: str, data: bytes, *, sha256: str | None = None) -> ObjectInfo:
        other = self.before.pop(key, None)
        if other is not None:
            other()
        return super().write(key, data, sha256=sha256)


def test_a_delete_racing_a_tag_push_leaves_no_tag_without_its_manifest(tmp_path: Path) -> None:
    storage = _Interleaving(tmp_path)
    registry = Registry(storage)
    body = _manifest(registry, 1)
    digest = sha256_digest(body)
    registry.manifests.put(REPO, "a", body, mediatypes.MANIFEST)
    # GIVEN a push of the manifest under tag "b" that found it known, and a DELETE by digest
    # that runs to the end after that look but before the tag is written
    storage.before[paths.tag_key(REPO, "b")] = lambda: registry.manifests.delete(REPO, digest)
    registry.manifests.put(REPO, "b", body, mediatypes.MANIFEST)
    # THEN the delete took tag "a", and the push's tag still has its manifest behind it
    assert registry.manifests.tags(REPO) == ["b"]
    assert registry.manifests.get(REPO, digest).data == body
    # AND deleting by digest again removes both
    registry.manifests.delete(REPO, digest)
    assert registry.manifests.tags(REPO) == []
    assert list(registry.storage.list(paths.manifests_prefix(REPO))) == []


def test_an_interrupted_delete_is_finished_by_deleting_again(tmp_path: Path) -> None:
    registry = Registry(FilesystemStorage(tmp_path))
    body = _manifest(registry, 1)
    digest = sha256_digest(body)
    registry.manifests.put(REPO, "a", body, mediatypes.MANIFEST)
    # GIVEN a delete by digest that stopped after removing the digest entry (its first step)
    assert registry.storage.delete(paths.manifest_key(REPO, digest))
    # WHEN the client deletes again THEN the tag goes and the delete succeeds
    registry.manifests.delete(REPO, digest)
    assert registry.manifests.tags(REPO) == []
    # AND only then is the digest unknown
    with pytest.raises(RegistryError) as unknown:
        registry.manifests.delete(REPO, digest)
    assert unknown.value.code == "MANIFEST_UNKNOWN"


def _inside_mkdir(path: Path, other: Callable[[], None]) -> Path:
    """``path``, whose parent runs ``other`` inside ``mkdir(exist_ok=True)``: after the directory
    was found to exist (EEXIST), before it is checked to be one (``is_dir``)."""
    pending = [other]

    class Racing(PosixPath):
        def is_dir(self, *, follow_symlinks: bool = True) -> bool:
            while pending:
                pending.pop()()
            return super().is_dir(follow_symlinks=follow_symlinks)

    return Racing(path)


class _RacingPublish(FilesystemStorage):
    """A real filesystem backend that runs another request inside the publish of one chosen key."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.inside_mkdir: dict[str, Callable[[], None]] = {}

    def path(self, key: str) -> Path:
        other = self.inside_mkdir.get(key)
        return super().path(key) if other is None else _inside_mkdir(super().path(key), other)


def test_a_write_racing_a_delete_that_prunes_the_directory_it_just_made(tmp_path: Path) -> None:
    # GIVEN a write of a/b/c whose publish makes a/ and then, before it can make a/b/ in it,
    # meets a delete whose pruning removes the (still empty) a/
    root = tmp_path / "root"
    pending = [lambda: (root / "a").rmdir()]

    class Pruned(PosixPath):
        def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
            super().mkdir(mode, parents, exist_ok)
            if self == root / "a":
                while pending:
                    pending.pop()()

    class Racing(FilesystemStorage):
        def path(self, key: str) -> Path:
            return Pruned(super().path(key))

    storage = Racing(root)
    # WHEN it goes on THEN it succeeds (a 1-3 % dropped connection in the bench's parallel pushes)
    storage.write("a/b/c", b"data")
    assert pending == [], "the pruning ran inside the publish"
    assert storage.read("a/b/c") == b"data"
    storage.delete("a/b/c")


def test_a_tag_push_racing_a_delete_that_prunes_the_tags_directory(tmp_path: Path) -> None:
    storage = _RacingPublish(tmp_path)
    registry = Registry(storage)
    body = _manifest(registry, 1)
    registry.manifests.put(REPO, "a", body, mediatypes.MANIFEST)
    ran: list[str] = []

    def delete_the_other_tag() -> None:
        registry.manifests.delete(REPO, "a")  # the last tag: its directory is pruned
        ran.append("delete")

    # GIVEN a push of tag "b" whose publish finds the tags directory, and a DELETE of tag "a"
    # that removes the directory's last entry, and with it the directory, just after that
    storage.inside_mkdir[paths.tag_key(REPO, "b")] = delete_the_other_tag
    # WHEN the push goes on THEN it succeeds (it was a 500, FileExistsError, about twice in 100)
    registry.manifests.put(REPO, "b", body, mediatypes.MANIFEST)
    assert ran == ["delete"], "the delete ran inside the publish"
    # AND each request did what it was asked
    assert registry.manifests.tags(REPO) == ["b"]
    assert registry.manifests.get(REPO, "b").data == body
    _cleanup(registry, sha256_digest(body))
