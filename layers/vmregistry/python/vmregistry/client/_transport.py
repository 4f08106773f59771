"""HTTP for the client: one connection per host per thread, proxies, retries, and a strict rule about tokens.

Built on :mod:`http.client` rather than a convenience library, for two
reasons. The client must control exactly what is sent where: redirects are
never followed automatically (a 307 from ``GET /blobs/<digest>`` points at a
storage host, and the registry's ``Authorization`` header must not go there;
S3 and the local data plane refuse requests that carry one), bodies stream
from files with a large block size, and ``Content-Length`` is always
explicit (S3 parts and presigned PUTs do not accept chunked bodies). And it
is the fastest: ``bench/transports.py`` moves the same blob with http.client,
urllib3 and httpx, and both libraries pull slower (urllib3's ``readinto``
copies every block once more, httpx reads through h11 in small pieces; the
figures are in docs/bench.md). What a library would add is small here: the
proxy rules (:mod:`._proxy`) and ``CONNECT`` tunnels (``set_tunnel``) are in
the stdlib's reach, connections are pooled per thread below, retries are
:func:`with_retries`.

Retries: connection failures, 5xx and 429 are retried with exponential
backoff and jitter (honouring ``Retry-After``); any other 4xx is final,
because sending the same request again cannot change the answer. A host
that refuses the connection, or whose name does not resolve, before it was
ever reached in this run fails at once (:class:`Unreachable`) with what to
check: retrying a registry that is not running only makes the user wait.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from vmregistry.client._errors import (
    ClientError,
    RegistryAPIError,
    TransientError,
    UsageError,
    from_response,
    is_transient,
)
from vmregistry.client._proxy import Proxy, ProxyConfig, tunnel_refused, unreachable
from vmregistry.client._reference import RegistryHost
from vmregistry.client._tokens import TokenSource

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
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            kind = self.headers.get("content-type", "no content type").split(";")[0]
            raise ClientError(
                f"{self.url.split('?')[0]} answered {self.status} with {kind}, not the registry's JSON."
                "\n  what to do: check the registry address and port: is it a vmregistry /v1 API?"
            ) from None


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
            if not is_transient(exc) or number == retries:
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
    """Sends requests, through the proxy the environment names; attaches the token only to the registry's origin."""

    def __init__(
        self,
        registry: RegistryHost,
        token: str | TokenSource | None = None,
        *,
        timeout: float = 120.0,
        ca_bundle: str | None = None,
        proxies: ProxyConfig | None = None,
    ) -> None:
        self.registry = registry
        self.tokens = token if isinstance(token, TokenSource) else TokenSource(static=token)
        self.tokens.fetch = self.exchange
        self.timeout = timeout
        self.proxies = ProxyConfig.from_env() if proxies is None else proxies
        self._local = threading.local()
        # Every thread's pool, so connections of finished worker threads can be closed.
        self._pools: dict[threading.Thread, dict[tuple[str, str], http.client.HTTPConnection]] = {}
        self._pools_lock = threading.Lock()
        self._ssl = tls_context(ca_bundle)
        self._reached: set[str] = set()

    @property
    def token(self) -> str | None:
        """The static token, if that is how this transport authenticates."""
        return self.tokens.static

    # -- connections ------------------------------------------------------------

    def _connections(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        pool: dict[tuple[str, str], http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
            with self._pools_lock:
                self._pools[threading.current_thread()] = pool
        return pool

    def proxy_for(self, scheme: str, netloc: str) -> Proxy | None:
        parts = urlsplit(f"{scheme}://{netloc}")
        return self.proxies.proxy_for(scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool = self._connections()
        connection = pool.get((scheme, netloc))
        if connection is None:
            proxy = self.proxy_for(scheme, netloc)
            address = proxy.netloc if proxy is not None else netloc
            if scheme == "https":
                connection = http.client.HTTPSConnection(
                    address, timeout=self.timeout, context=self._ssl, blocksize=BLOCK_SIZE
                )
                if proxy is not None:
                    # CONNECT host:port: the proxy relays TLS it cannot read; the certificate checked is the target's.
                    connection.set_tunnel(netloc, headers=proxy.headers())
            else:
                connection = http.client.HTTPConnection(address, timeout=self.timeout, blocksize=BLOCK_SIZE)
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
        if auth and same_origin:
            authorization = self.tokens.authorization()
            if authorization:
                out["Authorization"] = authorization
        out.update(headers or {})
        if not same_origin:
            # Whatever the caller passed, credentials never leave for another host.
            out.pop("Authorization", None)
        return out

    def _send(
        self,
        method: str,
        url: str,
        consume: Callable[[http.client.HTTPResponse], T],
        send: dict[str, str],
        body: bytes | Body | None,
        length: int | None,
        role: str = "",
    ) -> tuple[Reply, T | None]:
        """One exchange exactly as given (no header policy); connection failures raise."""
        parts = urlsplit(url)
        proxy = self.proxy_for(parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if proxy is not None and parts.scheme == "http":
            # A plain-http request goes to the proxy whole: absolute URL, and the proxy's credentials.
            target = f"http://{parts.netloc}{target}"
            send = send | proxy.headers()
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
            self._reached.add(parts.netloc)
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
            if proxy is not None and str(exc).startswith("Tunnel connection failed"):
                raise tunnel_refused(proxy, parts.netloc, str(exc)) from None
            first_contact = parts.netloc not in self._reached and (proxy is None or proxy.netloc not in self._reached)
            if first_contact and isinstance(exc, ConnectionRefusedError | socket.gaierror):
                origin = f"{parts.scheme}://{parts.netloc}"
                raise unreachable(exc, origin, self.registry.base_url, proxy, role) from None
            raise TransientError(f"{method} {parts.scheme}://{parts.netloc}{parts.path}: {exc!r}") from exc
        except BaseException:
            self._drop(parts.scheme, parts.netloc)
            raise
        if proxy is not None:
            self._reached.add(proxy.netloc)
        if reply.status == 407 and proxy is not None:
            raise tunnel_refused(proxy, parts.netloc, "407 Proxy Authentication Required")
        return reply, result

    def exchange(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        """A request sent exactly as given, whatever its status (the token endpoint's conversation)."""

        def attempt() -> Reply:
            send = {"User-Agent": USER_AGENT, **headers}
            reply, data = self._send(
                method, url, lambda response: response.read(), send, body, None, role="the registry's Auth Server"
            )
            if data is not None:
                reply.body = data
            if reply.status >= 500:
                raise from_response(reply.status, reply.body, reply.headers, url)
            return reply

        reply = with_retries(attempt, retries=2)
        return reply.status, reply.headers, reply.body

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

        Connection failures raise :class:`TransientError` (or :class:`Unreachable`
        for a host never reached); error statuses raise :class:`RegistryAPIError`
        (``.transient`` for 5xx and 429). A 401 from the registry is answered
        with a fresh token once, when the transport can get one.
        """
        send = self._headers(url, headers, auth)
        reply, result = self._send(method, url, consume, dict(send), body, length)
        replayable = body is None or isinstance(body, bytes)
        if (
            reply.status == 401
            and auth
            and replayable
            and url.startswith(self.registry.origin + "/")
            and self.tokens.on_challenge(reply.headers.get("www-authenticate"), send.get("Authorization"))
        ):
            send = self._headers(url, headers, auth)
            reply, result = self._send(method, url, consume, dict(send), body, length)
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
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> Reply:
        """A request whose whole answer fits in memory (API calls, not blob data)."""

        def attempt() -> Reply:
            reply, data = self.stream(
                method, url, lambda response: response.read(), headers=headers, body=body, auth=auth
            )
            if data is not None:
                reply.body = data
            return reply

        return with_retries(attempt, retries=retries, on_retry=on_retry)


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
