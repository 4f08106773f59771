"""Sending a planned multipart upload: data parts to presigned URLs, zero parts declared, as the plan yields them.

The plan (:mod:`._plan`) is lazy: while a disk is still being read and
hashed (:mod:`._scan`), the parts found so far are already on their way.
The calling thread walks the plan (and so reads the disk); ``concurrency``
threads send:

* a **data part** is sent to a presigned URL that places it at its offset
  (``PATCH ?part=N:OFFSET,...``: URLs are fetched for a few parts at a time,
  and once more for a part whose URL expired);
* **zero parts** are declared in batches (``PATCH ?zero=N:OFFSET:LENGTH,...``,
  within the protocol's per-request limits): storage fills them, nothing is sent.

Parts the session already holds (a resumed push) are skipped. The first
failure stops the walk and is raised once the parts in flight have settled;
what was stored stays stored, for the next run to resume. Once the plan is
walked (the disk read: its digest known), ``planned`` may call the rest off:
the registry turned out to hold the blob already.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from vmregistry.client._errors import ClientError, RegistryAPIError
from vmregistry.client._plan import Part
from vmregistry.client._progress import Task
from vmregistry.client._transport import Reply
from vmregistry.wire import MAX_PARTS_PER_REQUEST, MAX_ZERO_BYTES_PER_REQUEST, MAX_ZERO_PARTS_PER_REQUEST

__all__ = ["PartTransport", "send_parts"]

URL_BATCH = 16
"""Presigned URLs asked for at once: enough to keep the senders busy, few enough not to expire unused."""


class PartTransport(Protocol):
    """What sending parts needs from the push: the API, and one body sent to a presigned URL."""

    def call(self, method: str, url: str) -> Reply: ...

    def upload_url(self, uuid: str, query: str = "") -> str: ...

    def send(self, method: str, url: str, headers: dict[str, str], offset: int, length: int, task: Task) -> None: ...

    def release_threads(self) -> None:
        """Close the connections of sender threads that have ended."""


class _Sender:
    def __init__(self, transport: PartTransport, uuid: str, task: Task, on_stored: Callable[[int], None]) -> None:
        self.transport = transport
        self.uuid = uuid
        self.task = task
        self.on_stored = on_stored
        self.lock = threading.Lock()
        self.urls: dict[int, dict[str, Any]] = {}
        self.unsigned: list[Part] = []
        """Data parts planned, waiting for their URL, in plan order."""
        self.stop = threading.Event()

    def _fetch_urls(self, parts: list[Part]) -> None:
        spec = ",".join(f"{p.number}:{p.offset}" for p in parts)
        reply = self.transport.call("PATCH", self.transport.upload_url(self.uuid, f"?part={spec}"))
        for entry in reply.json().get("parts", []):
            self.urls[int(entry["number"])] = entry

    def url_for(self, part: Part, fresh: bool = False) -> dict[str, Any]:
        with self.lock:
            if fresh or part.number not in self.urls:
                batch = [part, *(p for p in self.unsigned if p.number != part.number and p.number not in self.urls)]
                self._fetch_urls(batch[: min(URL_BATCH, MAX_PARTS_PER_REQUEST)])
                self.unsigned = [p for p in self.unsigned if p.number not in self.urls]
            if part.number not in self.urls:
                raise ClientError(f"the registry gave no URL for part {part.number}")
            return self.urls.pop(part.number)

    def send(self, part: Part) -> None:
        url = self.url_for(part)
        try:
            self._put(url, part)
        except RegistryAPIError as exc:
            if exc.status != 403:
                raise
            self._put(self.url_for(part, fresh=True), part)  # an expired presigned URL: a new one, once
        self.on_stored(part.number)

    def _put(self, url: dict[str, Any], part: Part) -> None:
        headers = dict(url.get("headers") or {})
        self.transport.send(url.get("method", "PUT"), url["url"], headers, part.offset, part.length, self.task)

    def declare(self, parts: list[Part]) -> None:
        spec = ",".join(f"{p.number}:{p.offset}:{p.length}" for p in parts)
        reply = self.transport.call("PATCH", self.transport.upload_url(self.uuid, f"?zero={spec}"))
        stored = {int(entry["number"]): entry.get("size") for entry in reply.json().get("parts", [])}
        for part in parts:
            if stored.get(part.number) != part.length:
                raise ClientError(f"the registry did not store zero part {part.number} as declared")
            self.task.skip(part.length)
            self.on_stored(part.number)

    def guarded(self, work: Callable[[], None]) -> None:
        if self.stop.is_set():
            return
        try:
            work()
        except BaseException:
            self.stop.set()
            raise


def send_parts(
    transport: PartTransport,
    uuid: str,
    parts: Iterable[Part],
    held: dict[int, int],
    task: Task,
    concurrency: int,
    on_stored: Callable[[int], None],
    planned: Callable[[], bool] = lambda: False,
) -> bool:
    """Store every part of the plan the session does not hold yet; ``False`` if ``planned`` called it off."""
    sender = _Sender(transport, uuid, task, on_stored)
    futures: list[Future[None]] = []
    zeros: list[Part] = []
    pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="part")

    def flush() -> None:
        if zeros:
            futures.append(pool.submit(sender.guarded, functools.partial(sender.declare, list(zeros))))
            zeros.clear()

    try:
        for part in parts:  # walking the plan reads the disk: this thread hashes while the pool sends
            if sender.stop.is_set():
                break
            if held.get(part.number) == part.length:
                task.skip(part.length)
                continue
            if part.zero:
                full = len(zeros) == MAX_ZERO_PARTS_PER_REQUEST
                if full or sum(p.length for p in zeros) + part.length > MAX_ZERO_BYTES_PER_REQUEST:
                    flush()
                zeros.append(part)
                continue
            with sender.lock:
                sender.unsigned.append(part)
            futures.append(pool.submit(sender.guarded, functools.partial(sender.send, part)))
        flush()
        if not sender.stop.is_set() and planned():
            sender.stop.set()  # what is queued is not sent; what is in flight settles
            return False
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            future.result()  # the first failure, if any
        return True
    except BaseException:  # a failed part, a failed read of the disk, Ctrl-C: stop sending, keep what is stored
        sender.stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        transport.release_threads()
