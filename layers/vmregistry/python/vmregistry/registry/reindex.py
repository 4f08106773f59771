"""Rebuilding what the registry derives from its manifests, and migrating the first key layout.

The catalog (``catalog/<name>!``) is derived data: the manifests are the
truth. :func:`reindex` makes the catalog list exactly the repositories that
hold a manifest, which repairs it after anything that bypassed the domain
layer (a restore from backup, a crash between a delete and its second look).

It also moves a registry written by vmregistry 0.1, whose layout was
``links/<name>/_blobs/<hex>`` and ``manifests/<name>/<tag or sha256:hex>/manifest.json``,
to today's (:mod:`vmregistry.paths`); blob bytes did not move
(``blobs/sha256/<hex>`` then and now). Each object is copied before its old key is
deleted, so an interrupted run is finished by running it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmregistry import paths
from vmregistry.digests import digest_of
from vmregistry.names import is_digest, is_valid_name
from vmregistry.registry.manifests import tag_record
from vmregistry.storage import ObjectNotFound, Storage

__all__ = ["LEGACY_PREFIXES", "ReindexReport", "has_legacy_layout", "reindex"]

LEGACY_PREFIXES = ("links/", "manifests/")
_LEGACY_MANIFEST = "/manifest.json"


@dataclass(slots=True)
class ReindexReport:
    migrated: int = 0
    """Objects moved from the first layout."""
    listed: int = 0
    """Catalog entries added for repositories that hold a manifest."""
    unlisted: int = 0
    """Catalog entries removed for repositories that hold none."""


def has_legacy_layout(storage: Storage) -> bool:
    return any(next(storage.list(prefix), None) is not None for prefix in LEGACY_PREFIXES)


def _legacy_target(key: str) -> str | None:
    """Where a key of the first layout lives now, or ``None`` if it is not one."""
    if key.startswith("links/"):
        name, marker, hex_digest = key.removeprefix("links/").rpartition("/_blobs/")
        digest = f"sha256:{hex_digest}"
        return paths.layer_key(name, digest) if marker and is_valid_name(name) and is_digest(digest) else None
    if key.startswith("manifests/") and key.endswith(_LEGACY_MANIFEST):
        name, _, reference = key.removeprefix("manifests/").removesuffix(_LEGACY_MANIFEST).rpartition("/")
        if not is_valid_name(name):
            return None
        return paths.manifest_key(name, reference) if is_digest(reference) else paths.tag_key(name, reference)
    return None


def _migrate(storage: Storage, report: ReindexReport) -> None:
    for prefix in LEGACY_PREFIXES:
        for key in list(storage.list(prefix)):
            target = _legacy_target(key)
            if target is None:
                continue
            try:
                data = storage.read(key)
            except ObjectNotFound:
                continue
            if target.startswith(paths.REPOSITORIES_PREFIX) and "/_tags/" in target:
                data = tag_record(digest_of(data), data)  # 0.1's tags were plain copies
            storage.write(target, data)
            storage.delete(key)
            report.migrated += 1


def _holding_manifests(storage: Storage) -> set[str]:
    found: set[str] = set()
    for key in storage.list(paths.REPOSITORIES_PREFIX):
        body = key.removeprefix(paths.REPOSITORIES_PREFIX)
        for kind in ("/_manifests/", "/_tags/"):
            name, marker, _ = body.partition(kind)
            if marker and "/_" not in name:
                found.add(name)
    return found


def reindex(storage: Storage) -> ReindexReport:
    """Migrate the first layout if present, then make the catalog match the manifests."""
    report = ReindexReport()
    _migrate(storage, report)
    holding = _holding_manifests(storage)
    listed: set[str] = set()
    for key in list(storage.list(paths.CATALOG_PREFIX)):
        name = paths.repository_of_catalog_key(key)
        if name is None or name not in holding:
            storage.delete(key)
            report.unlisted += 1
        else:
            listed.add(name)
    for name in sorted(holding - listed):
        storage.write(paths.catalog_key(name), b"")
        report.listed += 1
    return report
