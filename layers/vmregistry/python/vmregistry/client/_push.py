"""Pushing: blobs by the cheapest route that fits their size, then the manifest.

For each blob, in order of preference:

1. the repository already holds it (``HEAD``): nothing to send;
2. it fits in one request (``inline_limit``, 4 MiB like the server's):
   ``PUT /v1/<name>/blobs/<digest>`` with the body;
3. it fits in one part (``part_size``): one presigned PUT bound to the
   SHA-256, sent with exactly the headers the registry returned;
4. otherwise multipart: ``part_size`` parts (at least 5 MiB, at most 10,000
   of them), presigned URLs fetched 100 at a time, uploaded by
   ``concurrency`` threads straight to storage, then ``PUT ?digest=`` to
   verify and publish.

A multipart upload's session id and part size are saved before the first
part goes out (:class:`._state.UploadState`); a later push of the same blob
asks the session which parts storage holds and sends only the others. Every
request is retried on connection errors, 5xx and 429; a part whose presigned
URL expired gets a fresh URL once.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vmregistry.client._errors import ClientError, RegistryAPIError
from vmregistry.client._image import DiskInfo, build_config, build_manifest, hash_disk
from vmregistry.client._progress import Progress, Task, interruption
from vmregistry.client._registry import RegistryClient
from vmregistry.client._state import DigestCache, UploadState
from vmregistry.client._transport import run_parallel, with_retries
from vmregistry.digests import digest_of
from vmregistry.wire import INLINE_LIMIT, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE

# A 50 GiB disk hashes in a few minutes on the registry's side; give it ample time.
VERIFY_TIMEOUT = 30 * 60.0
# Racing pushers of one new blob replace each other's single PUT; each resend settles one of them.
SINGLE_PUT_ATTEMPTS = 3

__all__ = ["Blob", "PushOptions", "PushResult", "push_blob", "push_image"]

MiB = 1024 * 1024
URLS_PER_REQUEST = 100


@dataclass(slots=True)
class PushOptions:
    concurrency: int = 4
    part_size: int = 64 * MiB
    inline_limit: int = INLINE_LIMIT
    state_root: Path | None = None
    """Where upload state and the digest cache live (default :func:`._state.cache_dir`)."""
    on_part: Callable[[str, int], None] | None = None
    """Called with (digest, part number) after each part is stored: a hook for tests and embedders."""


@dataclass(slots=True)
class PushResult:
    digest: str
    manifest: bytes
    outcomes: dict[str, str] = field(default_factory=dict)
    """digest -> "exists", "inline", "single", "multipart" or "resumed"."""


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes to push: a file on disk or bytes in memory, with their digest already known."""

    label: str
    digest: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def from_bytes(cls, label: str, data: bytes) -> Blob:
        return cls(label, digest_of(data), len(data), data=data)

    @classmethod
    def from_disk(cls, disk: DiskInfo) -> Blob:
        return cls(disk.path.name, disk.digest, disk.size, path=disk.path)

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + length]
        assert self.path is not None
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)


class _Slice:
    """``length`` bytes of a blob from ``offset``, read block by block as the request is sent."""

    def __init__(self, blob: Blob, offset: int, length: int, task: Task | None) -> None:
        self.blob = blob
        self.position = offset
        self.remaining = length
        self.task = task
        self.sent = 0
        self._fd = os.open(blob.path, os.O_RDONLY) if blob.path is not None else -1

    def read(self, size: int = -1, /) -> bytes:
        n = self.remaining if size < 0 else min(size, self.remaining)
        if n <= 0:
            return b""
        if self._fd >= 0:
            data = os.pread(self._fd, n, self.position)
        else:
            assert self.blob.data is not None
            data = self.blob.data[self.position : self.position + n]
        if not data:
            raise ClientError(f"{self.blob.label}: the file shrank while it was being pushed")
        self.position += len(data)
        self.remaining -= len(data)
        self.sent += len(data)
        if self.task is not None:
            self.task.advance(len(data))
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def rewind(self) -> None:
        """Take back the progress of a failed attempt."""
        if self.task is not None and self.sent:
            self.task.advance(-self.sent)
        self.sent = 0


def choose_part_size(size: int, wanted: int) -> int:
    """``wanted`` within S3's limits (5 MiB to 5 GiB, at most 10,000 parts), rounded up to MiB."""
    part = max(min(wanted, MAX_PART_SIZE), MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
    if part > MAX_PART_SIZE:
        raise ClientError(f"{size} bytes do not fit in {MAX_PARTS} parts of at most {MAX_PART_SIZE} bytes")
    return math.ceil(part / MiB) * MiB


class _Uploader:
    def __init__(
        self, client: RegistryClient, repository: str, blob: Blob, options: PushOptions, progress: Progress
    ) -> None:
        self.client = client
        self.repository = repository
        self.blob = blob
        self.options = options
        self.progress = progress

    def _send(self, method: str, url: str, headers: dict[str, str], offset: int, length: int, task: Task) -> None:
        """One body to a presigned URL (never with the registry's token), retried as a whole."""

        def attempt() -> None:
            body = _Slice(self.blob, offset, length, task)
            try:
                self.client.transport.stream(
                    method, url, lambda r: r.read(), headers=headers, body=body, length=length, auth=False
                )
            except BaseException:
                body.rewind()
                raise
            finally:
                body.close()

        with_retries(attempt, retries=self.client.retries, on_retry=self._note_retry)

    def _note_retry(self, exc: Exception, delay: float) -> None:
        self.progress.note(f"{self.blob.label}: {str(exc).splitlines()[0]}; retrying in {delay:.1f}s")

    def _upload_url(self, uuid: str, query: str = "") -> str:
        return self.client.url(f"/v1/{self.repository}/blobs/uploads/{uuid}") + query

    def _complete(self, uuid: str) -> None:
        reply = self.client.call("PUT", self._upload_url(uuid, f"?digest={quote(self.blob.digest, safe=':')}"))
        if reply.status == 202:
            self._await_verification(uuid)

    def _await_verification(self, uuid: str) -> None:
        """The registry verifies very large blobs after answering 202: wait for its verdict.

        The session reports ``verifying`` until the verdict; ``failed`` carries the
        error; once the session is gone the blob is published (HEAD answers 200).
        """
        self.progress.note(f"{self.blob.label}: the registry is verifying the digest")
        deadline = time.monotonic() + VERIFY_TIMEOUT
        delay = 0.5
        while time.monotonic() < deadline:
            try:
                status: dict[str, Any] = self.client.call("GET", self._upload_url(uuid)).json()
            except RegistryAPIError as exc:
                if exc.status != 404:
                    raise
                break
            if status.get("state") == "failed":
                error = status.get("error") or {}
                raise RegistryAPIError(
                    400,
                    str(error.get("code", "DIGEST_INVALID")),
                    str(error.get("message", "verification failed")),
                    error.get("detail"),
                    url=self._upload_url(uuid),
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
        if self.client.blob_size(self.repository, self.blob.digest) is None:
            raise ClientError(
                f"{self.blob.label}: the registry did not publish {self.blob.digest} after verifying it;"
                " push again (uploaded parts are kept for a day)"
            )

    # -- the routes -------------------------------------------------------------

    def inline(self) -> str:
        self.client.call(
            "PUT",
            self.client.blob_url(self.repository, self.blob.digest),
            headers={"Content-Type": "application/octet-stream"},
            body=self.blob.read(0, self.blob.size),
        )
        return "inline"

    def start(self, query: str) -> dict[str, Any]:
        url = self.client.url(f"/v1/{self.repository}/blobs/uploads/") + query
        reply = self.client.call("POST", url)
        started: dict[str, Any] = reply.json()
        return started

    def single(self, task: Task) -> str | None:
        """The presigned single PUT; ``None`` if the registry chose multipart (it cannot presign)."""
        started = self.start(f"?digest={quote(self.blob.digest, safe=':')}&size={self.blob.size}")
        if started.get("mode") != "single":
            self.client.call("DELETE", self._upload_url(started["uuid"]))
            return None
        upload = started["upload"]
        for attempt in range(SINGLE_PUT_ATTEMPTS):
            self._send(
                upload.get("method", "PUT"), upload["url"], dict(upload.get("headers") or {}), 0, self.blob.size, task
            )
            try:
                self._complete(started["uuid"])
                return "single"
            except RegistryAPIError as exc:
                # Another client's upload of the same blob replaced ours between PUT and completion:
                # the registry links only bytes this session sent, so send them once more.
                if exc.code != "BLOB_UPLOAD_INVALID" or attempt == SINGLE_PUT_ATTEMPTS - 1:
                    raise
                task.advance(-self.blob.size)  # the bytes go again: take back their progress
        raise AssertionError("unreachable: the last attempt returns or raises")

    def multipart(self, task: Task) -> str:
        blob, options = self.blob, self.options
        state = UploadState(self.client.registry.base_url, self.repository, blob.digest, options.state_root)
        held: dict[int, int] = {}
        outcome = "multipart"
        uuid: str | None = None
        part_size = choose_part_size(blob.size, options.part_size)
        saved = state.load()
        if saved is not None and saved.get("size") == blob.size:
            try:
                status = self.client.call("GET", self._upload_url(str(saved["uuid"]))).json()
            except RegistryAPIError as exc:
                if exc.status != 404:
                    raise
                status = None
            if status is not None and status.get("mode") == "multipart":
                uuid, part_size, outcome = str(saved["uuid"]), int(saved["partSize"]), "resumed"
                held = {int(p["number"]): int(p["size"]) for p in status.get("parts", [])}
        if uuid is None:
            started = self.start(f"?digest={quote(blob.digest, safe=':')}&size={blob.size}&mode=multipart")
            uuid = str(started["uuid"])
            state.save(uuid, part_size, blob.size)
        count = max(1, math.ceil(blob.size / part_size))

        def span(number: int) -> tuple[int, int]:
            offset = (number - 1) * part_size
            return offset, min(part_size, blob.size - offset)

        missing = [n for n in range(1, count + 1) if held.get(n) != span(n)[1]]
        task.skip(sum(span(n)[1] for n in range(1, count + 1) if n not in missing))
        if outcome == "resumed":
            self.progress.note(f"{blob.label}: resuming, {count - len(missing)} of {count} parts already stored")
        self._upload_parts(uuid, missing, span, task)
        try:
            self._complete(uuid)
        except RegistryAPIError as exc:
            if exc.code in ("DIGEST_INVALID", "SIZE_INVALID", "BLOB_UPLOAD_UNKNOWN"):
                state.clear()
            raise
        state.clear()
        return outcome

    def _part_urls(self, uuid: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
        urls: dict[int, dict[str, Any]] = {}
        runs: list[tuple[int, int]] = []
        for n in numbers:
            if runs and runs[-1][1] == n - 1 and n - runs[-1][0] < URLS_PER_REQUEST:
                runs[-1] = (runs[-1][0], n)
            else:
                runs.append((n, n))
        for first, last in runs:
            spec = str(first) if first == last else f"{first}-{last}"
            reply = self.client.call("PATCH", self._upload_url(uuid, f"?part={spec}"))
            for part in reply.json().get("parts", []):
                urls[int(part["number"])] = part
        return urls

    def _upload_parts(self, uuid: str, numbers: list[int], span: Callable[[int], tuple[int, int]], task: Task) -> None:
        if not numbers:
            return
        lock = threading.Lock()
        pending = list(numbers)
        urls: dict[int, dict[str, Any]] = {}

        def url_for(number: int, fresh: bool = False) -> dict[str, Any]:
            with lock:
                if fresh or number not in urls:
                    # Fetch URLs for this part and the next ones in line, a batch at a time.
                    index = pending.index(number)
                    urls.update(
                        self._part_urls(uuid, pending[index : index + URLS_PER_REQUEST])
                        if not fresh
                        else self._part_urls(uuid, [number])
                    )
                return urls[number]

        def upload_part(number: int) -> None:
            offset, length = span(number)
            part = url_for(number)
            try:
                self._send(
                    part.get("method", "PUT"), part["url"], dict(part.get("headers") or {}), offset, length, task
                )
            except RegistryAPIError as exc:
                if exc.status != 403:
                    raise
                # An expired presigned URL: ask for a new one, once.
                part = url_for(number, fresh=True)
                self._send(
                    part.get("method", "PUT"), part["url"], dict(part.get("headers") or {}), offset, length, task
                )
            if self.options.on_part is not None:
                self.options.on_part(self.blob.digest, number)

        # A failed part ends the push; the saved state resumes the parts not yet sent.
        run_parallel(numbers, upload_part, self.options.concurrency, "part", self.client.transport)


def push_blob(client: RegistryClient, repository: str, blob: Blob, options: PushOptions, progress: Progress) -> str:
    """Make sure ``repository`` holds ``blob``; returns how it got there."""
    if client.blob_size(repository, blob.digest) == blob.size:
        progress.note(f"{blob.label}: already in the registry ({blob.digest[:19]})")
        return "exists"
    uploader = _Uploader(client, repository, blob, options, progress)
    if blob.size <= options.inline_limit:
        outcome = uploader.inline()
        task = progress.task(f"push {blob.label}", blob.size)
        task.advance(blob.size)
        task.finish("pushed")
        return outcome
    task = progress.task(f"push {blob.label}", blob.size)
    try:
        result = uploader.single(task) if blob.size <= choose_part_size(blob.size, options.part_size) else None
        if result is None:
            result = uploader.multipart(task)
    except BaseException as exc:
        task.finish(interruption(exc, "push"))
        raise
    task.finish("pushed")
    return result


def measure_disks(paths: list[Path], progress: Progress, cache: DigestCache) -> list[DiskInfo]:
    disks = []
    for path in paths:
        info = cache.get(path) if path.is_file() else None
        if info is None:
            size = path.stat().st_size if path.exists() else 0
            task = progress.task(f"hash {path.name}", size)
            info = hash_disk(path, task.advance)
            task.finish("hashed")
            cache.put(info)
        disks.append(info)
    names = [d.path.name for d in disks]
    if len(set(names)) != len(names):
        raise ClientError(f"two disks have the same file name ({names}): rename one so pull can tell them apart")
    return disks


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
    client.want(f"repository:{repository}:pull,push")
    measured = measure_disks(disks, progress, DigestCache(options.state_root))
    config = build_config(
        measured,
        user_config=user_config,
        cpus=cpus,
        memory_mib=memory_mib,
        bootloader=bootloader,
        architecture=architecture,
    )
    manifest = build_manifest(config, measured)
    result = PushResult("", manifest)
    for disk in measured:
        result.outcomes[disk.digest] = push_blob(client, repository, Blob.from_disk(disk), options, progress)
    config_blob = Blob.from_bytes("config", config)
    result.outcomes[config_blob.digest] = push_blob(client, repository, config_blob, options, progress)
    result.digest = client.put_manifest(repository, tag, manifest)
    return result
