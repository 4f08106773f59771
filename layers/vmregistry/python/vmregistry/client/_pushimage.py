"""Pushing a VM image: its disks (read once, sent as they are read), a config blob, then the manifest.

Each disk is read by :mod:`._scan` for its digest, format and data extents:

* a disk the digest cache knows unchanged (same path, size, mtime, inode) is
  not read again; nor is one the registry already holds sent again;
* a small disk (``read_first_below``, 256 MiB) is read first, then pushed by
  the usual routes (:func:`._push.push_planned`): so an unchanged one is
  found in the registry and not sent;
* a larger one is pushed while it is read: its parts go out as the reading
  finds them, zero runs declared for storage to fill, and the digest, known
  at the end of the reading, completes the upload.

The config needs the disks' digests and the manifest the config's, so both
are built after the disks are pushed. A disk pushed with zero parts gets the
ranges a pull must fetch in its layer descriptor (:data:`vmregistry.extents.DATA_ANNOTATION`):
the registry refuses the manifest if it cannot vouch for them (the blob was
uploaded before, without declaring them), and the push then sends the
manifest without them (a pull then fetches every byte).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vmregistry.client._errors import ClientError, RegistryAPIError, UsageError
from vmregistry.client._image import DiskInfo, build_config, build_manifest
from vmregistry.client._plan import Part, data_extents, plan_parts
from vmregistry.client._progress import Progress, interruption
from vmregistry.client._push import Blob, PushOptions, PushResult, Uploader, choose_part_size, push_planned
from vmregistry.client._registry import RegistryClient
from vmregistry.client._scan import DiskScan, scan_disk
from vmregistry.client._state import DigestCache
from vmregistry.extents import DATA_ANNOTATION, format_extents

__all__ = ["push_disk", "push_image"]


def _annotated(info: DiskInfo, parts: list[Part]) -> DiskInfo:
    """The disk with the ranges a pull must fetch, if its upload left any out."""
    if not any(part.zero for part in parts):
        return info
    return dataclasses.replace(info, data_extents=format_extents(data_extents(parts)))


def push_disk(
    client: RegistryClient, repository: str, path: Path, options: PushOptions, progress: Progress, cache: DigestCache
) -> tuple[DiskInfo, str]:
    """Make sure the repository holds the disk: (what it is, how it got there)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read disk {path}: {exc.strerror or exc}") from None
    info = cache.get(path) if path.is_file() else None
    if info is not None and info.extents is None:
        info = None  # cached by a version that did not record extents: read it again
    if info is None and size <= options.read_first_below:
        task = progress.task(f"hash {path.name}", size)
        info = scan_disk(path, task.advance)
        task.finish("hashed")
        cache.put(info)
    if info is not None:
        outcome, parts = push_planned(client, repository, Blob.from_disk(info), options, progress)
        if outcome == "exists" and info.extents is not None:
            parts = Blob.from_disk(info).plan(choose_part_size(size, options.part_size))
        return _annotated(info, parts), outcome
    scan = DiskScan(path)
    uploader = Uploader(client, repository, Blob(path.name, "", size, path=path), options, progress)
    task = progress.task(f"push {path.name}", size)
    try:
        outcome, parts = uploader.multipart(
            task, lambda part_size: plan_parts(scan, size, part_size), lambda: scan.info().digest
        )
    except BaseException as exc:
        task.finish(interruption(exc, "push"))
        raise
    task.finish("pushed")
    info = scan.info()
    cache.put(info)
    return _annotated(info, parts), outcome


def _put_manifest(
    client: RegistryClient, repository: str, tag: str, config: bytes, disks: list[DiskInfo], progress: Progress
) -> tuple[str, bytes]:
    manifest = build_manifest(config, disks)
    try:
        return client.put_manifest(repository, tag, manifest), manifest
    except RegistryAPIError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {}
        if exc.code != "MANIFEST_INVALID" or detail.get("annotation") != DATA_ANNOTATION:
            raise
    progress.note("the registry cannot vouch for the disks' extents (uploaded before without them): a pull fetches all")
    plain = [dataclasses.replace(disk, data_extents=None) for disk in disks]
    manifest = build_manifest(config, plain)
    return client.put_manifest(repository, tag, manifest), manifest


def push_image(
    client: RegistryClient,
    repository: str,
    tag: str,
    disks: list[Path],
    *,
    user_config: dict[str, Any] | None = None,
    cpus: int | None = None,
    memory_mib: int | None = None,
    bootloader: str | None = None,
    architecture: str | None = None,
    options: PushOptions | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Push the disks as one image tagged ``tag``; returns the manifest digest."""
    options = options or PushOptions()
    progress = progress or Progress(mode="quiet")
    names = [path.name for path in disks]
    if len(set(names)) != len(names):
        raise ClientError(f"two disks have the same file name ({names}): rename one so pull can tell them apart")
    settings: dict[str, Any] = {
        "user_config": user_config,
        "cpus": cpus,
        "memory_mib": memory_mib,
        "bootloader": bootloader,
        "architecture": architecture,
    }
    build_config([], **settings)  # a bad setting fails before any disk is read
    client.want(f"repository:{repository}:pull,push")
    cache = DigestCache(options.state_root)
    pushed: list[DiskInfo] = []
    outcomes: dict[str, str] = {}
    for path in disks:
        info, outcome = push_disk(client, repository, path, options, progress, cache)
        pushed.append(info)
        outcomes[info.digest] = outcome
    config = build_config(pushed, **settings)
    config_blob = Blob.from_bytes("config", config)
    outcomes[config_blob.digest] = push_planned(client, repository, config_blob, options, progress)[0]
    digest, manifest = _put_manifest(client, repository, tag, config, pushed, progress)
    return PushResult(digest, manifest, outcomes)
