"""HTTP for the client: one connection per host per thread, retries, and a strict rule about tokens.

Built on :mod:`http.client` rather than a convenience library because the
client must control exactly what is sent where: redirects are never followed
automatically (a 307 from ``GET /blobs/<digest>`` points at a storage host,
and the registry's ``Authorization`` header must not go there; S3 and the
local data plane refuse requests that carry one), bodies stream from files
with a large block size, and ``Content-Length`` is always explicit (S3 parts
and presigned PUTs do not accept chunked bodies).

Retries: connection failures, 5xx and 429 are retried with exponential
backoff and jitter (honouring ``Retry-After``); any other 4xx is final,
because sending the same request again cannot change the answer.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from vmregistry.client._errors import ClientError, RegistryAPIError, TransientError, UsageError, from_response
from vmregistry.client._reference import RegistryHost

__all__ = ["Body", "Reply", "Transport", "run_parallel", "tls_context", "with_retries"]

T = TypeVar("T")
BLOCK_SIZE = 1024 * 1024
USER_AGENT = "vmregistry-client/0.1"


class Body(Protocol):
    """A request body read in blocks (a file slice); its length goes in ``Content-Length``."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    url: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


def with_retries(
    attempt: Callable[[], T],
    *,
    retries: int,
    backoff: float = 0.5,
    on_retry: Callable[[Exception, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt``; on a transient failure wait and run it again, at most ``retries`` more times."""
    for number in range(retries + 1):
        try:
            return attempt()
        except (TransientError, RegistryAPIError) as exc:
            transient = isinstance(exc, TransientError) or (isinstance(exc, RegistryAPIError) and exc.transient)
            if not transient or number == retries:
                raise
            hinted = exc.retry_after if isinstance(exc, RegistryAPIError) else None
            delay = hinted if hinted is not None else min(30.0, backoff * 2**number) * random.uniform(0.5, 1.0)
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The system's trusted CAs, plus ``ca_bundle`` (PEM) if given.

    Added to the defaults rather than replacing them: a registry behind a private CA
    still hands out presigned URLs of S3, whose certificates the system trusts.
    """
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the CA bundle {ca_bundle}: {exc}; it must be a PEM file") from None
    return context


class Transport:
    """Sends requests; attaches the bearer token only to the registry's own origin."""

    def __init__(
        self, registry: RegistryHost, token: str | None = None, *, timeout: float = 120.0, ca_bundle: str | None = None
    ) -> None:
        self.registry = registry
        self.token = token
        self.timeout = timeout
        self._local = threading.local()
        # Every thread's pool, so connections of finished worker threads can be closed.
        self._pools: dict[threading.Thread, dict[tuple[str, str], http.client.HTTPConnection]] = {}
        self._pools_lock = threading.Lock()
        self._ssl = tls_context(ca_bundle)

    # -- connections ------------------------------------------------------------

    def _connections(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        pool: dict[tuple[str, str], http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
            with self._pools_lock:
                self._pools[threading.current_thread()] = pool
        return pool

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool = self._connections()
        connection = pool.get((scheme, netloc))
        if connection is None:
            if scheme == "https":
                connection = http.client.HTTPSConnection(
                    netloc, timeout=self.timeout, context=self._ssl, blocksize=BLOCK_SIZE
                )
            else:
                connection = http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=BLOCK_SIZE)
            pool[(scheme, netloc)] = connection
        return connection

    def _drop(self, scheme: str, netloc: str) -> None:
        connection = self._connections().pop((scheme, netloc), None)
        if connection is not None:
            connection.close()

    def release_finished_threads(self) -> None:
        """Close the connections of threads that have ended (a finished pool of workers)."""
        with self._pools_lock:
            for thread in [t for t in self._pools if not t.is_alive()]:
                for connection in self._pools.pop(thread).values():
                    connection.close()

    def close(self) -> None:
        """Close every connection this transport opened, in any thread."""
        with self._pools_lock:
            for pool in self._pools.values():
                for connection in pool.values():
                    connection.close()
                pool.clear()

    # -- requests ---------------------------------------------------------------

    def _headers(self, url: str, headers: Mapping[str, str] | None, auth: bool) -> dict[str, str]:
        out = {"User-Agent": USER_AGENT}
        same_origin = url.startswith(self.registry.origin + "/")
        if auth and self.token and same_origin:
            out["Authorization"] = f"Bearer {self.token}"
        out.update(headers or {})
        if not same_origin:
            # Whatever the caller passed, credentials never leave for another host.
            out.pop("Authorization", None)
        return out

    def stream(
        self,
        method: str,
        url: str,
        consume: Callable[[http.client.HTTPResponse], T],
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | Body | None = None,
        length: int | None = None,
        auth: bool = True,
    ) -> tuple[Reply, T | None]:
        """One attempt. 2xx bodies go to ``consume``; 3xx come back as they are; >= 400 raise.

        Connection failures raise :class:`TransientError`; error statuses raise
        :class:`RegistryAPIError` (``.transient`` for 5xx and 429).
        """
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        send = self._headers(url, headers, auth)
        for name in [name for name in send if name.lower() == "content-length"]:
            del send[name]
        if body is not None:
            send["Content-Length"] = str(len(body) if isinstance(body, bytes) else length or 0)
        elif method in ("PUT", "POST", "PATCH"):
            send["Content-Length"] = "0"
        connection = self._connection(parts.scheme, parts.netloc)
        try:
            connection.request(method, target, body=body, headers=send)
            response = connection.getresponse()
            reply_headers = {k.lower(): v for k, v in response.getheaders()}
            if 200 <= response.status < 300 and method != "HEAD":
                result = consume(response)
                response.read()  # drain what consume left, so the connection can be reused
                reply = Reply(response.status, reply_headers, b"", url)
            else:
                reply = Reply(response.status, reply_headers, response.read(), url)
                result = None
            if response.will_close:
                self._drop(parts.scheme, parts.netloc)
        except ssl.SSLCertVerificationError as exc:
            # Not transient: the same certificate will fail the same way on every retry.
            self._drop(parts.scheme, parts.netloc)
            raise ClientError(
                f"{parts.netloc}: TLS certificate not trusted ({exc.verify_message}). If the registry uses a"
                " private CA, pass its certificate with --ca-bundle FILE (or VMREGISTRY_CA_BUNDLE)."
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop(parts.scheme, parts.netloc)
            raise TransientError(f"{method} {parts.scheme}://{parts.netloc}{parts.path}: {exc!r}") from exc
        except BaseException:
            self._drop(parts.scheme, parts.netloc)
            raise
        if reply.status >= 400:
            raise from_response(reply.status, reply.body, reply.headers, url)
        return reply, result

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        auth: bool = True,
        retries: int = 0,
    ) -> Reply:
        """A request whose whole answer fits in memory (API calls, not blob data)."""

        def attempt() -> Reply:
            reply, data = self.stream(
                method, url, lambda response: response.read(), headers=headers, body=body, auth=auth
            )
            if data is not None:
                reply.body = data
            return reply

        return with_retries(attempt, retries=retries)


_Item = TypeVar("_Item")


def run_parallel(
    items: Iterable[_Item], work: Callable[[_Item], None], concurrency: int, name: str, transport: Transport
) -> None:
    """Run ``work`` on every item, ``concurrency`` at a time; the first failure is raised.

    After a failure no new item starts (those already running finish), so an
    interrupted push or pull stops promptly and leaves what it saved for resuming.
    """
    stop = threading.Event()

    def guarded(item: _Item) -> None:
        if stop.is_set():
            return
        try:
            work(item)
        except BaseException:
            stop.set()
            raise

    executor = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=name)
    try:
        futures: list[Future[None]] = [executor.submit(guarded, item) for item in items]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        transport.release_finished_threads()
