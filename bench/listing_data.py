"""The listing benchmark's data: the same repositories and tags, written straight into each registry's layout.

Pushing 40,000 repositories through either API would take most of an hour on
this machine (a blob, a manifest and fsyncs per repository), so the data is
written the way each registry's filesystem driver would have left it after
those pushes, with plain file writes (no fsync: nothing here has to survive
a crash), and then checked through each registry's API before anything is
timed (:func:`check_through_api`): the first and a deep page of the catalog
and of the tags, and a manifest pulled by tag.

* **vmregistry**: keys from :mod:`vmregistry.paths` itself and a tag record
  from :func:`vmregistry.registry.manifests.tag_record`, so the layout cannot
  drift from the registry's: a config and a disk blob (shared, as
  content-addressed blobs are), and per repository its two layer links, the
  manifest under its digest, its tag(s) and its catalog entry.
* **distribution** (2.8's filesystem driver, ``docker/registry/v2/``): the
  same blobs and a Docker schema 2 manifest of the same shape under
  ``blobs/sha256/<2 hex>/<hex>/data``, and per repository the link files a
  push writes: ``_layers/sha256/<hex>/link`` for both blobs,
  ``_manifests/revisions/sha256/<hex>/link`` and, per tag,
  ``_manifests/tags/<tag>/current/link`` and ``.../index/sha256/<hex>/link``.

The names follow issue 17's example (``org7/vm3007``): ten organisations, a
repository ``vm<i>`` in organisation ``i % 10``, one tag each; one of them,
:data:`TAGGED`, holds the many tags instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.client import BenchError, api
from bench.control import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, VM_CONFIG, VM_DISK, VM_MANIFEST
from bench.servers import Server

__all__ = [
    "TAGGED",
    "Dataset",
    "check_through_api",
    "file_count",
    "load_s3",
    "read_page",
    "write_distribution",
    "write_vmregistry",
]

TAGGED = "org0/vm0"
"""The repository that holds the dataset's many tags (every other one holds one tag, ``latest``)."""


@dataclass(frozen=True)
class Dataset:
    label: str
    repositories: int
    tags: int
    on_disk: bool = False
    """Written to the work directory's filesystem instead of ``/dev/shm`` (see :mod:`bench.listing`)."""

    def names(self) -> list[str]:
        """Every repository name, sorted (the catalog's order)."""
        return sorted(f"org{i % 10}/vm{i}" for i in range(self.repositories))

    def tag_names(self) -> list[str]:
        """The tags of :data:`TAGGED`, sorted."""
        return sorted(f"build-{i:05d}" for i in range(self.tags))

    def tags_of(self, name: str) -> list[str]:
        return self.tag_names() if name == TAGGED else ["latest"]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "cpus": 2}).encode()
_LAYER = b"\0" * 4096


def _manifest(media: str, config_type: str, layer_type: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media,
            "config": {"mediaType": config_type, "digest": _digest(_CONFIG), "size": len(_CONFIG)},
            "layers": [{"mediaType": layer_type, "digest": _digest(_LAYER), "size": len(_LAYER)}],
        }
    ).encode()


VM_MANIFEST_BYTES = _manifest(VM_MANIFEST, VM_CONFIG, VM_DISK)
DOCKER_MANIFEST_BYTES = _manifest(DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)


def _put(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _in_parallel(work: Callable[[str], None], names: Iterable[str]) -> None:
    # File creation is mostly system time; a few threads keep both cores busy.
    with ThreadPoolExecutor(4) as pool:
        for _ in pool.map(work, names):
            pass


def write_vmregistry(root: Path, dataset: Dataset) -> None:
    """The layout ``vmregistry serve -fs-path root`` would hold after pushing ``dataset``."""
    from vmregistry import paths
    from vmregistry.registry.manifests import tag_record

    manifest_digest = _digest(VM_MANIFEST_BYTES)
    record = tag_record(manifest_digest, VM_MANIFEST_BYTES)
    for blob in (_CONFIG, _LAYER):
        _put(root / paths.blob_key(_digest(blob)), blob)

    def repository(name: str) -> None:
        for blob in (_CONFIG, _LAYER):
            _put(root / paths.layer_key(name, _digest(blob)), str(len(blob)).encode())
        _put(root / paths.manifest_key(name, manifest_digest), VM_MANIFEST_BYTES)
        for tag in dataset.tags_of(name):
            _put(root / paths.tag_key(name, tag), record)
        _put(root / paths.catalog_key(name), b"")

    _in_parallel(repository, dataset.names())


def write_distribution(root: Path, dataset: Dataset) -> None:
    """The layout distribution 2.8's filesystem driver under ``root`` would hold after pushing ``dataset``."""
    v2 = root / "docker" / "registry" / "v2"
    manifest_digest = _digest(DOCKER_MANIFEST_BYTES)
    for blob in (_CONFIG, _LAYER, DOCKER_MANIFEST_BYTES):
        hexdigest = _digest(blob).removeprefix("sha256:")
        _put(v2 / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data", blob)

    def link(path: Path, digest: str) -> None:
        _put(path / digest.replace(":", "/", 1) / "link", digest.encode())

    def repository(name: str) -> None:
        repo = v2 / "repositories" / name
        for blob in (_CONFIG, _LAYER):
            link(repo / "_layers", _digest(blob))
        link(repo / "_manifests" / "revisions", manifest_digest)
        for tag in dataset.tags_of(name):
            _put(repo / "_manifests" / "tags" / tag / "current" / "link", manifest_digest.encode())
            link(repo / "_manifests" / "tags" / tag / "index", manifest_digest)

    _in_parallel(repository, dataset.names())


def load_s3(storage: Any, dataset: Dataset) -> int:
    """The keys a listing reads, through the registry's own S3 backend; returns how many were written.

    The catalog entries and :data:`TAGGED`'s tags only: a page reads ``catalog/``
    or one repository's ``_tags/``, never another repository's tag, blobs, links
    or manifests. LocalStack takes ~4 ms of this machine's CPU per PUT (about
    225 a second here), so writing the whole layout (five keys a repository)
    would take over 15 minutes at 40,000 repositories, for keys no page touches.
    """
    from vmregistry import paths
    from vmregistry.registry.manifests import tag_record

    record = tag_record(_digest(VM_MANIFEST_BYTES), VM_MANIFEST_BYTES)
    keys = [paths.catalog_key(name) for name in dataset.names()]
    keys += [paths.tag_key(TAGGED, tag) for tag in dataset.tag_names()]

    def write(key: str) -> None:
        storage.write(key, b"" if key.startswith(paths.CATALOG_PREFIX) else record)

    with ThreadPoolExecutor(16) as pool:  # the S3 client's connection pool
        for _ in pool.map(write, keys):
            pass
    return len(keys)


def read_page(server: Server, path: str, key: str) -> list[str]:
    answer = api(server, "GET", server.api + path)
    if answer.status != 200:
        raise BenchError(f"{server.name}: GET {path}: HTTP {answer.status} {answer.body[:300]!r}")
    items = json.loads(answer.body)[key]
    if not isinstance(items, list):
        raise BenchError(f"{server.name}: GET {path}: {key} is not a list")
    return [str(item) for item in items]


def check_through_api(server: Server, dataset: Dataset, cases: dict[str, tuple[str, str, list[str]]]) -> dict[str, Any]:
    """Every case's page, read once through the API, against the expected slice; a manifest pulled by tag.

    ``cases``: name -> (path, JSON key, expected items). Returns per case how many
    items came back and whether they were the expected ones; raises if
    vmregistry's are not, or if either registry's manifest cannot be pulled.
    A page that holds more than asked (a registry that ignores ``n``) is
    recorded, not raised, for distribution: that is its behaviour to report.
    """
    out: dict[str, Any] = {}
    for case, (path, key, expected) in cases.items():
        items = read_page(server, path, key)
        out[case] = {"items": len(items), "expected": items == expected}
        if items != expected and server.api == "/v1":
            raise BenchError(f"{server.name}: {path} gave {items[:3]}...({len(items)}), expected {expected[:3]}...")
    name = dataset.names()[-1]
    media = VM_MANIFEST if server.api == "/v1" else DOCKER_MANIFEST
    pulled = api(server, "GET", f"{server.api}/{name}/manifests/latest", headers={"Accept": media})
    body = VM_MANIFEST_BYTES if server.api == "/v1" else DOCKER_MANIFEST_BYTES
    if pulled.status != 200 or pulled.body != body:
        raise BenchError(f"{server.name}: GET {name}:latest: HTTP {pulled.status} {pulled.body[:300]!r}")
    return out


def file_count(root: Path) -> int:
    """Files below ``root`` (what each layout costs the filesystem for the same data)."""
    return sum(len(files) for _, _, files in os.walk(root))
