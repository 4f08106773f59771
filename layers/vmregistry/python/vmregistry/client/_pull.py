"""Pulling: manifest, config and disks, verified, resumable and sparse.

A blob is fetched with ``GET /v1/<name>/blobs/<digest>``, which answers 307
with a presigned storage URL. That URL is followed **without** the
registry's ``Authorization`` header (storage refuses a second credential, and
the token must not leak to another host); if the registry instead serves the
bytes itself (a backend that cannot presign), they are read from it.

Bytes land in ``<file>.partial``, sized up front, in chunks of ``chunk_size``
fetched by ``concurrency`` threads with ``Range`` requests. After each chunk
``<file>.partial.json`` records which chunks are complete, so a pull that
was killed asks only for the rest. Runs of zero bytes are not written (the
write position skips over them), which leaves holes: disk images keep their
sparseness. The finished file is hashed and gets its final name only if it
has the digest the manifest names; otherwise both partial files are removed
and the pull fails.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

from vmregistry import mediatypes
from vmregistry.client._errors import ClientError, DigestMismatch, RegistryAPIError, TransientError
from vmregistry.client._image import disk_file_name
from vmregistry.client._progress import Progress, Task, interruption
from vmregistry.client._registry import FetchedManifest, RegistryClient
from vmregistry.client._state import atomic_write_json
from vmregistry.client._transport import run_parallel, with_retries
from vmregistry.digests import digest_of, hasher

__all__ = ["PullOptions", "PullResult", "fetch_blob_bytes", "pull_blob", "pull_image", "write_sparse"]

MiB = 1024 * 1024
SPARSE_BLOCK = 64 * 1024
READ_BUFFER = 1 * MiB
_ZERO = bytes(SPARSE_BLOCK)


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
    start = 0
    run = -1  # start of the pending run of non-zero blocks
    while start < len(data):
        block = data[start : start + SPARSE_BLOCK]
        zero = block == _ZERO[: len(block)]
        if zero and run >= 0:
            os.pwrite(fd, data[run:start], offset + run)
            run = -1
        elif not zero and run < 0:
            run = start
        start += SPARSE_BLOCK
    if run >= 0:
        os.pwrite(fd, data[run:], offset + run)


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
    digest = hasher("sha256")
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(8 * MiB):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def pull_blob(
    client: RegistryClient,
    repository: str,
    digest: str,
    size: int,
    destination: Path,
    options: PullOptions,
    progress: Progress,
    label: str | None = None,
) -> str:
    """Put the blob at ``destination``, verified; returns "present", "downloaded" or "resumed"."""
    label = label or destination.name
    if destination.is_file() and destination.stat().st_size == size and _hash_file(destination) == digest:
        progress.note(f"{label}: already downloaded and verified")
        return "present"
    partial = destination.with_name(destination.name + ".partial")
    state_path = destination.with_name(destination.name + ".partial.json")
    chunk_size = max(MiB, options.chunk_size)
    done: set[int] = set()
    outcome = "downloaded"
    try:
        state = json.loads(state_path.read_text())
        if state.get("digest") == digest and state.get("size") == size and partial.is_file():
            chunk_size = int(state["chunkSize"])
            done = {int(i) for i in state.get("done", [])}
            outcome = "resumed" if done else outcome
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if outcome != "resumed":
        partial.unlink(missing_ok=True)
    count = max(1, math.ceil(size / chunk_size))
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT, 0o644)
    task = progress.task(f"pull {label}", size)
    try:
        os.ftruncate(fd, size)
        task.skip(sum(min(chunk_size, size - i * chunk_size) for i in done))
        if outcome == "resumed":
            progress.note(f"{label}: resuming, {len(done)} of {count} chunks already downloaded")
        missing = [i for i in range(count) if i not in done]
        if missing and size:
            _download_chunks(client, repository, digest, size, chunk_size, missing, done, fd, state_path, options, task)
        os.fsync(fd)
    except BaseException as exc:
        task.finish(interruption(exc, "pull"))
        raise
    finally:
        os.close(fd)
    actual = _hash_file(partial)
    if actual != digest:
        partial.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        task.finish("corrupt")
        raise DigestMismatch(f"blob {label}", digest, actual)
    os.replace(partial, destination)
    state_path.unlink(missing_ok=True)
    task.finish("pulled")
    return outcome


def _download_chunks(
    client: RegistryClient,
    repository: str,
    digest: str,
    size: int,
    chunk_size: int,
    missing: list[int],
    done: set[int],
    fd: int,
    state_path: Path,
    options: PullOptions,
    task: Task,
) -> None:
    source = _Source(client, repository, digest)
    lock = threading.Lock()

    def fetch_chunk(index: int) -> None:
        start = index * chunk_size
        end = min(size, start + chunk_size)
        got = 0
        refreshed = False

        def attempt() -> None:
            nonlocal got
            first = start + got
            url, auth = source.url, source.auth

            def consume(response: HTTPResponse) -> int:
                if response.status == 200 and first != 0:
                    raise ClientError(f"{url.split('?')[0]} ignored the Range header")
                return _read_into(response, fd, first, end - first, options.sparse, task)

            _, received = client.transport.stream(
                "GET", url, consume, headers={"Range": f"bytes={first}-{end - 1}"}, auth=auth
            )
            got += received or 0
            if start + got < end:
                raise TransientError(f"connection closed after {got} of {end - start} bytes; resuming")

        while True:
            try:
                with_retries(attempt, retries=client.retries)
                break
            except RegistryAPIError as exc:
                # A presigned URL expires: get a fresh one once per chunk.
                if exc.status != 403 or refreshed or source.auth:
                    raise
                refreshed = True
                source.refresh()
        with lock:
            done.add(index)
            atomic_write_json(
                state_path, {"digest": digest, "size": size, "chunkSize": chunk_size, "done": sorted(done)}
            )
        if options.on_chunk is not None:
            options.on_chunk(digest, index)

    # A failed chunk ends the pull; the chunks recorded as done resume it later.
    run_parallel(missing, fetch_chunk, options.concurrency, "chunk", client.transport)


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
        pull_blob(client, repository, digest, size, directory / name, options, progress)
        result.files[digest] = directory / name
    target = directory / "manifest.json"
    temporary = directory / ".manifest.json.tmp"
    temporary.write_bytes(manifest.data)
    os.replace(temporary, target)
    return result
