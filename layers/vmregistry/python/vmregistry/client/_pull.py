"""Pulling: manifest, config and disks, verified, resumable and sparse.

A blob is fetched with ``GET /v1/<name>/blobs/<digest>``, which answers 307
with a presigned storage URL. That URL is followed **without** the
registry's ``Authorization`` header (storage refuses a second credential, and
the token must not leak to another host); if the registry instead serves the
bytes itself (a backend that cannot presign), they are read from it.

Bytes land in ``<file>.partial``, sized up front, in chunks of ``chunk_size``
fetched by ``concurrency`` threads with ``Range`` requests. A disk whose layer
lists the ranges that hold data (:data:`vmregistry.extents.DATA_ANNOTATION`,
which the registry checked against the zeros it filled itself) is fetched in
those ranges only: the rest of the file stays a hole. After each chunk
``<file>.partial.json`` records which chunks are complete, so a pull that
was killed asks only for the rest. Runs of zero bytes are not written (the
write position skips over them), which leaves holes: disk images keep their
sparseness. The file is hashed as its chunks land, in order (:mod:`._follow`;
holes from memory), and gets its final name only if it has the digest the
manifest names, whatever the annotation said; otherwise both partial files
are removed and the pull fails.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

from vmregistry import mediatypes
from vmregistry.client._errors import ClientError, DigestMismatch, RegistryAPIError, TransientError
from vmregistry.client._follow import FollowingDigest
from vmregistry.client._image import disk_file_name
from vmregistry.client._progress import Progress, Task, interruption
from vmregistry.client._registry import FetchedManifest, RegistryClient
from vmregistry.client._state import atomic_write_json
from vmregistry.client._transport import run_parallel, with_retries
from vmregistry.digests import digest_of
from vmregistry.extents import (
    DATA_ANNOTATION,
    Extent,
    ExtentError,
    format_extents,
    hash_file,
    nonzero_runs,
    parse_extents,
)
from vmregistry.storage.pump import start_writeback

__all__ = ["PullOptions", "PullResult", "fetch_blob_bytes", "layer_extents", "pull_blob", "pull_image", "write_sparse"]

MiB = 1024 * 1024
SPARSE_BLOCK = 64 * 1024
READ_BUFFER = 1 * MiB


@dataclass(slots=True)
class PullOptions:
    concurrency: int = 4
    chunk_size: int = 32 * MiB
    sparse: bool = True
    on_chunk: Callable[[str, int], None] | None = None
    """Called with (digest, chunk index) after each chunk is on disk: a hook for tests and embedders."""


@dataclass(slots=True)
class PullResult:
    digest: str
    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    """digest -> the file that holds it."""


def write_sparse(fd: int, data: memoryview, offset: int, sparse: bool = True) -> None:
    """Write ``data`` at ``offset``, skipping whole zero blocks so the file keeps holes there."""
    if not sparse:
        os.pwrite(fd, data, offset)
        return
    for start, end in nonzero_runs(data, len(data), SPARSE_BLOCK):
        os.pwrite(fd, data[start:end], offset + start)


class _Source:
    """Where a blob's bytes come from: a presigned URL (no token) or the registry itself."""

    def __init__(self, client: RegistryClient, repository: str, digest: str) -> None:
        self.client = client
        self.repository = repository
        self.digest = digest
        self.lock = threading.Lock()
        self.url = ""
        self.auth = False
        self.refresh()

    def refresh(self) -> None:
        def attempt() -> tuple[str, bool]:
            registry_url = self.client.blob_url(self.repository, self.digest)
            reply, _ = self.client.transport.stream("GET", registry_url, lambda r: None, headers={"Range": "bytes=0-0"})
            if reply.status in (301, 302, 303, 307, 308) and reply.headers.get("location"):
                return self.client.resolve(reply.headers["location"]), False
            return registry_url, True

        with self.lock:
            self.url, self.auth = with_retries(attempt, retries=self.client.retries)


def _read_into(response: HTTPResponse, fd: int, offset: int, length: int, sparse: bool, task: Task | None) -> int:
    """Copy up to ``length`` bytes of ``response`` to ``fd`` at ``offset``; returns how many arrived."""
    buffer = bytearray(READ_BUFFER)
    view = memoryview(buffer)
    written = 0
    while written < length:
        filled = 0
        want = min(READ_BUFFER, length - written)
        while filled < want:
            n = response.readinto(view[filled:want])
            if not n:
                break
            filled += n
        if filled:
            write_sparse(fd, view[:filled], offset + written, sparse)
            written += filled
            if task is not None:
                task.advance(filled)
        if filled < want:
            break
    return written


def _hash_file(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return f"sha256:{hash_file(fd, os.fstat(fd).st_size)}"
    finally:
        os.close(fd)


def _chunks(size: int, chunk_size: int, extents: list[Extent] | None) -> list[tuple[int, int]]:
    """The ranges fetched, in order: the data extents (or the whole blob), cut into ``chunk_size`` pieces."""
    ranges = extents if extents is not None else [Extent(0, size)]
    return [(start, min(start + chunk_size, r.end)) for r in ranges for start in range(r.offset, r.end, chunk_size)]


def layer_extents(layer: Any, size: int) -> list[Extent] | None:
    """The ranges a layer says hold data, if it says so sensibly; ``None``: fetch it all."""
    annotations = layer.get("annotations") if isinstance(layer, dict) else None
    text = annotations.get(DATA_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(text, str):
        return None
    try:
        return parse_extents(text, size)
    except ExtentError:
        return None  # the digest still checks what arrives; fetching everything is always right


def pull_blob(
    client: RegistryClient,
    repository: str,
    digest: str,
    size: int,
    destination: Path,
    options: PullOptions,
    progress: Progress,
    label: str | None = None,
    extents: list[Extent] | None = None,
) -> str:
    """Put the blob at ``destination``, verified; returns "present", "downloaded" or "resumed".

    ``extents``: the ranges that hold data (the rest is zeros: a hole, not fetched).
    """
    label = label or destination.name
    if destination.is_file() and destination.stat().st_size == size and _hash_file(destination) == digest:
        progress.note(f"{label}: already downloaded and verified")
        return "present"
    partial = destination.with_name(destination.name + ".partial")
    state_path = destination.with_name(destination.name + ".partial.json")
    plan = format_extents(extents) if extents is not None else None
    chunk_size = max(MiB, options.chunk_size)
    done: set[int] = set()
    outcome = "downloaded"
    try:
        state = json.loads(state_path.read_text())
        if (state.get("digest"), state.get("size"), state.get("extents")) == (digest, size, plan) and partial.is_file():
            chunk_size = int(state["chunkSize"])
            done = {int(i) for i in state.get("done", [])}
            outcome = "resumed" if done else outcome
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if outcome != "resumed":
        partial.unlink(missing_ok=True)
    chunks = _chunks(size, chunk_size, extents)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    task = progress.task(f"pull {label}", size)
    follower: FollowingDigest | None = None
    try:
        os.ftruncate(fd, size)
        task.skip(size - sum(end - start for start, end in chunks))  # zeros: nothing to fetch
        task.skip(sum(chunks[i][1] - chunks[i][0] for i in done if i < len(chunks)))
        if outcome == "resumed":
            progress.note(f"{label}: resuming, {len(done)} of {len(chunks)} chunks already downloaded")
        follower = FollowingDigest(fd, size, chunks, done)
        missing = [i for i in range(len(chunks)) if i not in done]
        if missing:
            record = {"digest": digest, "size": size, "chunkSize": chunk_size, "extents": plan}
            source = _Source(client, repository, digest)
            fetch = _Fetch(client, source, digest, chunks, done, fd, state_path, record, options, task)
            fetch.run(missing, follower.landed)
        actual = follower.result()
        os.fsync(fd)
    except BaseException as exc:
        if follower is not None:
            follower.abandon()
        task.finish(interruption(exc, "pull"))
        raise
    finally:
        os.close(fd)
    if actual != digest:
        partial.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        task.finish("corrupt")
        raise DigestMismatch(f"blob {label}", digest, actual)
    os.replace(partial, destination)
    state_path.unlink(missing_ok=True)
    task.finish("pulled")
    return outcome


@dataclass
class _Fetch:
    """The chunks of one blob, fetched in parallel with ranged GETs; each recorded as done once written."""

    client: RegistryClient
    source: _Source
    digest: str
    chunks: list[tuple[int, int]]
    done: set[int]
    fd: int
    state_path: Path
    record: dict[str, Any]
    options: PullOptions
    task: Task
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, missing: list[int], landed: Callable[[int], None]) -> None:
        def fetch(index: int) -> None:
            self._fetch(index)
            start, end = self.chunks[index]
            start_writeback(self.fd, start, end - start)  # the final fsync then waits for the last chunks only
            with self.lock:
                self.done.add(index)
                atomic_write_json(self.state_path, self.record | {"done": sorted(self.done)})
            landed(index)
            if self.options.on_chunk is not None:
                self.options.on_chunk(self.digest, index)

        # A failed chunk ends the pull; the chunks recorded as done resume it later.
        run_parallel(missing, fetch, self.options.concurrency, "chunk", self.client.transport)

    def _fetch(self, index: int) -> None:
        start, end = self.chunks[index]
        got = 0
        refreshed = False

        def attempt() -> None:
            nonlocal got
            first = start + got
            url, auth = self.source.url, self.source.auth

            def consume(response: HTTPResponse) -> int:
                if response.status == 200 and first != 0:
                    raise ClientError(f"{url.split('?')[0]} ignored the Range header")
                return _read_into(response, self.fd, first, end - first, self.options.sparse, self.task)

            _, received = self.client.transport.stream(
                "GET", url, consume, headers={"Range": f"bytes={first}-{end - 1}"}, auth=auth
            )
            got += received or 0
            if start + got < end:
                raise TransientError(f"connection closed after {got} of {end - start} bytes; resuming")

        while True:
            try:
                with_retries(attempt, retries=self.client.retries)
                return
            except RegistryAPIError as exc:
                # A presigned URL expires: get a fresh one once per chunk.
                if exc.status != 403 or refreshed or self.source.auth:
                    raise
                refreshed = True
                self.source.refresh()


def fetch_blob_bytes(client: RegistryClient, repository: str, digest: str, limit: int = 16 * MiB) -> bytes:
    """A small blob (a config) in memory, verified."""
    source = _Source(client, repository, digest)
    chunks: list[bytes] = []

    def attempt() -> None:
        chunks.clear()
        client.transport.stream("GET", source.url, lambda r: chunks.append(r.read(limit + 1)), auth=source.auth)

    with_retries(attempt, retries=client.retries)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ClientError(f"blob {digest} is larger than {limit} bytes; pull it to a file instead")
    actual = digest_of(data)
    if actual != digest:
        raise DigestMismatch(f"blob {digest}", digest, actual)
    return data


def _descriptor(value: Any, where: str) -> tuple[str, int]:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("digest"), str)
        or not isinstance(value.get("size"), int)
    ):
        raise ClientError(f"the manifest's {where} is not a descriptor with digest and size")
    return str(value["digest"]), int(value["size"])


def pull_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    directory: Path,
    *,
    options: PullOptions | None = None,
    progress: Progress | None = None,
) -> PullResult:
    """Download the image into ``directory``: ``manifest.json``, ``config.json`` and one file per disk."""
    options = options or PullOptions()
    progress = progress or Progress(mode="quiet")
    client.want(f"repository:{repository}:pull")
    manifest: FetchedManifest = client.get_manifest(repository, reference)
    document = manifest.document()
    if document.get("mediaType", mediatypes.MANIFEST) != mediatypes.MANIFEST:
        raise ClientError(f"{repository}:{reference} is a {document.get('mediaType')}, not a VM image manifest")
    config_digest, config_size = _descriptor(document.get("config"), "config")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise ClientError("the manifest has no layers list")
    directory.mkdir(parents=True, exist_ok=True)
    result = PullResult(manifest.digest, directory)
    pull_blob(client, repository, config_digest, config_size, directory / "config.json", options, progress, "config")
    result.files[config_digest] = directory / "config.json"
    taken: set[str] = set()
    for index, layer in enumerate(layers):
        digest, size = _descriptor(layer, f"layers[{index}]")
        name = disk_file_name(layer, index, taken)
        taken.add(name)
        extents = layer_extents(layer, size)
        pull_blob(client, repository, digest, size, directory / name, options, progress, extents=extents)
        result.files[digest] = directory / name
    target = directory / "manifest.json"
    temporary = directory / ".manifest.json.tmp"
    temporary.write_bytes(manifest.data)
    os.replace(temporary, target)
    return result
