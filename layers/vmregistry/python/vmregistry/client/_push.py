"""Pushing blobs: by the cheapest route that fits their size.

For each blob, in order of preference:

1. the repository already holds it (``HEAD``): nothing to send;
2. it fits in one request (``inline_limit``, 4 MiB like the server's):
   ``PUT /v1/<name>/blobs/<digest>`` with the body;
3. it fits in one part (``part_size``): one presigned PUT bound to the
   SHA-256, sent with exactly the headers the registry returned;
4. otherwise multipart, in placed parts (``partSize``): the plan (:mod:`._plan`)
   cuts the blob into data parts, sent by ``concurrency`` threads straight to
   storage, and zero parts, declared for storage to fill (:mod:`._parts`);
   then ``PUT ?digest=`` to verify and publish. The digest may still be
   unknown when the first part goes out: a disk being read (:mod:`._scan`)
   is planned and sent as it is read, and its digest is needed only then.

A multipart upload's session id and part size are saved before the first
part goes out (:class:`._state.UploadState`); a later push of the same file
asks the session which parts storage holds and sends only the others. Every
request is retried on connection errors, 5xx and 429; a part whose presigned
URL expired gets a fresh URL once. Whole images: :mod:`._pushimage`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vmregistry.client._errors import ClientError, RegistryAPIError
from vmregistry.client._image import DiskInfo
from vmregistry.client._parts import send_parts
from vmregistry.client._plan import Part, plan_parts
from vmregistry.client._progress import Progress, Task, interruption
from vmregistry.client._registry import RegistryClient
from vmregistry.client._state import UploadState, file_identity
from vmregistry.client._transport import Reply, with_retries
from vmregistry.digests import digest_of
from vmregistry.extents import Extent
from vmregistry.wire import INLINE_LIMIT, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE

# A 50 GiB disk hashes in a few minutes on the registry's side; give it ample time.
VERIFY_TIMEOUT = 30 * 60.0
# Racing pushers of one new blob replace each other's single PUT; each resend settles one of them.
SINGLE_PUT_ATTEMPTS = 3

__all__ = ["Blob", "PushOptions", "PushResult", "Uploader", "choose_part_size", "push_blob", "push_planned"]

MiB = 1024 * 1024


@dataclass(slots=True)
class PushOptions:
    concurrency: int = 4
    part_size: int = 64 * MiB
    inline_limit: int = INLINE_LIMIT
    state_root: Path | None = None
    """Where upload state and the digest cache live (default :func:`._state.cache_dir`)."""
    on_part: Callable[[str, int], None] | None = None
    """Called with (digest, part number) after each part is stored: a hook for tests and embedders.
    A disk still being read when the part went out is named by its file name instead."""
    read_first_below: int = 256 * MiB
    """Disks up to this size are read (hashed) before anything is sent, so an unchanged one is found in
    the registry and not sent again; larger ones are sent while they are read (the digest comes last)."""


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
    """Empty while a disk is still being read (its digest comes at the end)."""
    size: int
    path: Path | None = None
    data: bytes | None = None
    extents: tuple[Extent, ...] | None = None
    """The ranges that may hold data; the rest is zeros, for storage to fill (``None``: all of it)."""

    @classmethod
    def from_bytes(cls, label: str, data: bytes) -> Blob:
        return cls(label, digest_of(data), len(data), data=data)

    @classmethod
    def from_disk(cls, disk: DiskInfo) -> Blob:
        return cls(disk.path.name, disk.digest, disk.size, path=disk.path, extents=disk.extents)

    def plan(self, part_size: int) -> list[Part]:
        """Its multipart parts (:mod:`._plan`)."""
        extents = self.extents if self.extents is not None else (Extent(0, self.size),)
        return list(plan_parts(extents, self.size, part_size))

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


class Uploader:
    """One blob's push through the API; also the :class:`._parts.PartTransport` its parts go through."""

    def __init__(
        self, client: RegistryClient, repository: str, blob: Blob, options: PushOptions, progress: Progress
    ) -> None:
        self.client = client
        self.repository = repository
        self.blob = blob
        self.options = options
        self.progress = progress

    def send(self, method: str, url: str, headers: dict[str, str], offset: int, length: int, task: Task) -> None:
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

    def call(self, method: str, url: str) -> Reply:
        return self.client.call(method, url)

    def upload_url(self, uuid: str, query: str = "") -> str:
        return self.client.url(f"/v1/{self.repository}/blobs/uploads/{uuid}") + query

    def release_threads(self) -> None:
        self.client.transport.release_finished_threads()

    def _complete(self, uuid: str, digest: str) -> None:
        reply = self.client.call("PUT", self.upload_url(uuid, f"?digest={quote(digest, safe=':')}"))
        if reply.status == 202:
            self._await_verification(uuid, digest)

    def _await_verification(self, uuid: str, digest: str) -> None:
        """The registry verifies very large blobs after answering 202: wait for its verdict.

        The session reports ``verifying`` until the verdict; ``failed`` carries the
        error; once the session is gone the blob is published (HEAD answers 200).
        """
        self.progress.note(f"{self.blob.label}: the registry is verifying the digest")
        deadline = time.monotonic() + VERIFY_TIMEOUT
        delay = 0.5
        while time.monotonic() < deadline:
            try:
                status: dict[str, Any] = self.client.call("GET", self.upload_url(uuid)).json()
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
                    url=self.upload_url(uuid),
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
        if self.client.blob_size(self.repository, digest) is None:
            raise ClientError(
                f"{self.blob.label}: the registry did not publish {digest} after verifying it;"
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
            self.client.call("DELETE", self.upload_url(started["uuid"]))
            return None
        upload = started["upload"]
        for attempt in range(SINGLE_PUT_ATTEMPTS):
            self.send(
                upload.get("method", "PUT"), upload["url"], dict(upload.get("headers") or {}), 0, self.blob.size, task
            )
            try:
                self._complete(started["uuid"], self.blob.digest)
                return "single"
            except RegistryAPIError as exc:
                # Another client's upload of the same blob replaced ours between PUT and completion:
                # the registry links only bytes this session sent, so send them once more.
                if exc.code != "BLOB_UPLOAD_INVALID" or attempt == SINGLE_PUT_ATTEMPTS - 1:
                    raise
                task.advance(-self.blob.size)  # the bytes go again: take back their progress
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _resumable(self, state: UploadState) -> tuple[str, int, dict[int, int]] | None:
        """The session a stopped push left (uuid, part size, parts held), if the registry still has it open."""
        saved = state.load()
        if saved is None or saved.get("size") != self.blob.size:
            return None
        try:
            status = self.client.call("GET", self.upload_url(str(saved["uuid"]))).json()
        except RegistryAPIError as exc:
            if exc.status != 404:
                raise
            return None
        if status.get("mode") != "multipart" or status.get("state") != "open":
            return None
        held = {int(p["number"]): int(p["size"]) for p in status.get("parts", [])}
        return str(saved["uuid"]), int(saved["partSize"]), held

    def multipart(
        self,
        task: Task,
        plan: Callable[[int], Iterable[Part]] | None = None,
        digest: Callable[[], str] | None = None,
    ) -> tuple[str, list[Part]]:
        """Placed parts (see the module docstring); returns the outcome and the parts of the plan.

        ``plan`` maps the part size to the parts (default: :meth:`Blob.plan`); it may be
        lazy, and ``digest`` is then asked for once the plan has been walked to its end.
        """
        blob, options = self.blob, self.options
        subject = file_identity(blob.path) if blob.path is not None else blob.digest
        state = UploadState(self.client.registry.base_url, self.repository, subject, options.state_root)
        resumed = self._resumable(state)
        if resumed is not None:
            uuid, part_size, held = resumed
            outcome = "resumed"
        else:
            part_size, held, outcome = choose_part_size(blob.size, options.part_size), {}, "multipart"
            query = f"?size={blob.size}&mode=multipart&partSize={part_size}"
            started = self.start(query + (f"&digest={quote(blob.digest, safe=':')}" if blob.digest else ""))
            uuid = str(started["uuid"])
            state.save(uuid, part_size, blob.size)
        parts = plan(part_size) if plan is not None else blob.plan(part_size)
        if outcome == "resumed":
            have = sum(1 for p in parts if held.get(p.number) == p.length) if isinstance(parts, list) else None
            found = f"{have} of {len(parts)}" if isinstance(parts, list) else str(len(held))
            self.progress.note(f"{blob.label}: resuming, {found} parts already stored")
        walked: list[Part] = []

        def planned() -> Iterable[Part]:
            for part in parts:
                walked.append(part)
                yield part

        def stored(number: int) -> None:
            if options.on_part is not None:
                options.on_part(blob.digest or blob.label, number)

        def held_already() -> bool:
            """With the digest known at last: does the registry hold the blob already (a copy of a pushed disk)?"""
            if blob.digest or digest is None:
                return False
            return self.client.blob_size(self.repository, digest()) == blob.size

        if not send_parts(self, uuid, planned(), held, task, options.concurrency, stored, held_already):
            self.client.call("DELETE", self.upload_url(uuid))
            state.clear()
            self.progress.note(f"{blob.label}: already in the registry ({digest()[:19] if digest else ''}); stopped")
            task.skip(blob.size - task.done_bytes)
            return "exists", walked
        try:
            self._complete(uuid, digest() if digest is not None else blob.digest)
        except RegistryAPIError as exc:
            if exc.code in ("DIGEST_INVALID", "SIZE_INVALID", "BLOB_UPLOAD_UNKNOWN"):
                state.clear()
            raise
        state.clear()
        return outcome, walked


def push_blob(client: RegistryClient, repository: str, blob: Blob, options: PushOptions, progress: Progress) -> str:
    """Make sure ``repository`` holds ``blob``; returns how it got there."""
    return push_planned(client, repository, blob, options, progress)[0]


def push_planned(
    client: RegistryClient, repository: str, blob: Blob, options: PushOptions, progress: Progress
) -> tuple[str, list[Part]]:
    """:func:`push_blob`, and the parts a multipart upload was planned in (none by the other routes)."""
    if client.blob_size(repository, blob.digest) == blob.size:
        progress.note(f"{blob.label}: already in the registry ({blob.digest[:19]})")
        return "exists", []
    uploader = Uploader(client, repository, blob, options, progress)
    if blob.size <= options.inline_limit:
        outcome = uploader.inline()
        task = progress.task(f"push {blob.label}", blob.size)
        task.advance(blob.size)
        task.finish("pushed")
        return outcome, []
    task = progress.task(f"push {blob.label}", blob.size)
    try:
        single = blob.size <= choose_part_size(blob.size, options.part_size)
        result = uploader.single(task) if single else None
        outcome, parts = (result, []) if result is not None else uploader.multipart(task)
    except BaseException as exc:
        task.finish(interruption(exc, "push"))
        raise
    task.finish("pushed")
    return outcome, parts
