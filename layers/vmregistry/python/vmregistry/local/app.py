"""Local mode's composition root: everything one ``vmregistry serve`` process is made of, built once.

What :mod:`vmregistry.runtime` is for a Lambda function, this module is for
the local server: it chooses the storage backend, the data plane's URL signer,
the verifier of large uploads, the upload sweeper and the authorizer step,
wires them to the same handlers Lambda runs (:mod:`vmregistry.local.gateway`)
behind a real HTTP server (:mod:`vmregistry.local.http`), and, for
``-workers N``, decides in the parent what every worker must share (the
listening socket, the signing key) before forking them
(:mod:`vmregistry.local.workers`).
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable

from vmregistry.config import Settings
from vmregistry.local.dataplane import DataPlane
from vmregistry.local.gateway import Authorizer, Gateway
from vmregistry.local.http import HTTPServer, listen, public_url
from vmregistry.local.verifier import thread_verifier
from vmregistry.local.workers import SUPPORTED, Supervisor
from vmregistry.registry import Registry
from vmregistry.registry.reindex import has_legacy_layout
from vmregistry.routes import FUNCTIONS
from vmregistry.runtime import configure
from vmregistry.storage import Storage, StorageError
from vmregistry.storage.factory import open_storage
from vmregistry.storage.filesystem import FilesystemStorage
from vmregistry.storage.signing import UrlSigner

__all__ = ["LocalServer", "presign_secret", "quiet_powertools", "serve_workers"]

log = logging.getLogger("vmregistry.local.server")

# How long a stopping server waits for the requests it is serving.
DRAIN_TIMEOUT = 8.0
UPLOAD_MAX_AGE = 24 * 3600
LEFTOVER_MAX_AGE = 3600
"""Leftovers of dead requests go once untouched this long: far more than a live request
leaves its temporary state idle (the server drops a connection silent for http.IDLE_TIMEOUT)."""
SWEEP_INTERVAL = 3600


def quiet_powertools() -> None:
    """Metrics and traces go to CloudWatch and X-Ray; locally they would be noise on stdout.

    Powertools reads these when a handler module is imported: call this first.
    """
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


def presign_secret() -> bytes:
    """The data plane's HMAC key: ``VMREGISTRY_PRESIGN_SECRET``, else fresh random bytes."""
    return os.environ.get("VMREGISTRY_PRESIGN_SECRET", "").encode() or secrets.token_bytes(32)


class LocalServer:
    """Storage, data plane and HTTP server for one process, ready to serve.

    ``listener`` is a socket from :func:`~vmregistry.local.http.listen` to serve
    on instead of binding ``host:port`` (a pre-forked worker gets its parent's);
    ``secret`` keys the data plane's URL signatures, so workers that share it
    accept each other's URLs. ``sweep`` runs the hourly upload sweep: one
    process of a group does.
    """

    def __init__(
        self,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 8080,
        authorizer: Authorizer | None = None,
        *,
        listener: socket.socket | None = None,
        secret: bytes | None = None,
        sweep: bool = True,
    ) -> None:
        quiet_powertools()
        self.settings = settings
        self.sweep = sweep
        listener = listener or listen(host, port)
        self.url = public_url(listener)
        self.port = int(listener.getsockname()[1])
        signer = UrlSigner(settings.public_url or self.url, secret or presign_secret())
        try:
            self.storage = open_storage(settings, signer)
        except BaseException:
            listener.close()
            raise
        dataplane = DataPlane(self.storage, signer) if isinstance(self.storage, FilesystemStorage) else None
        self.gateway = Gateway(
            dataplane=dataplane,
            authorizer=authorizer,
            origin_from_host=settings.public_url is None,
            storage=self.storage,
        )
        self.httpd = HTTPServer(listener, self.gateway)
        self.registry = Registry(self.storage, settings, thread_verifier())
        configure(self.registry)
        if _holds_legacy_layout(self.storage):
            log.warning(
                "this storage holds images in vmregistry 0.1's key layout, which this version does not read:"
                " stop the server and run `vmregistry reindex` with the same storage flags to migrate them"
            )
        self._stop = threading.Event()

    def sweep_uploads(self) -> None:
        """Discard upload sessions a day old and what dead requests left (at start, then hourly)."""
        try:
            swept = self.registry.uploads.sweep(UPLOAD_MAX_AGE, LEFTOVER_MAX_AGE)
        except (StorageError, OSError) as exc:
            log.warning("could not sweep abandoned uploads: %s", exc)
            return
        if swept:
            log.info("swept %s", swept, extra={"swept": swept._asdict()})

    def _sweeper(self) -> None:
        while not self._stop.wait(SWEEP_INTERVAL):
            self.sweep_uploads()

    def serve_forever(self) -> None:
        if self.sweep:
            self.sweep_uploads()
            threading.Thread(target=self._sweeper, name="upload-sweeper", daemon=True).start()
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self._stop.set()
            # Requests already being served finish (a push completing, a body arriving); the
            # supervisor's grace (workers.STOP_GRACE) is longer, so it need not kill a draining worker.
            unfinished = self.httpd.drain(DRAIN_TIMEOUT)
            if unfinished:
                log.warning("stopping with %d requests still being served", unfinished)
            self.httpd.server_close()

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests and embedding)."""
        thread = threading.Thread(target=self.serve_forever, name="vmregistry-server", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        self._stop.set()
        self.httpd.shutdown()


def _holds_legacy_layout(storage: Storage) -> bool:
    try:
        return has_legacy_layout(storage)
    except StorageError:  # unreachable storage is answered 503 per request, not refused at start
        return False


def serve_workers(
    settings: Settings,
    host: str,
    port: int,
    authorizer: Authorizer | None,
    workers: int,
    on_ready: Callable[[str], None],
    on_server: Callable[[LocalServer], None] | None = None,
) -> int:
    """Bind and decide in this process what every worker shares, fork them, supervise; the exit status."""
    if not SUPPORTED:
        raise ValueError("-workers above 1 needs fork() and sigwaitinfo() (Linux); use -workers 1")
    listener = listen(host, port)
    secret = presign_secret()  # a URL one worker signs must verify in every other
    quiet_powertools()
    # Imported once here, shared copy-on-write: a worker starts (or restarts) without paying for it.
    for spec in FUNCTIONS:
        if spec.kind != "authorizer":
            importlib.import_module(spec.module)

    def make_server(index: int) -> LocalServer:
        server = LocalServer(settings, authorizer=authorizer, listener=listener, secret=secret, sweep=index == 0)
        if on_server is not None:  # e.g. the opt-in dev token endpoint (cli/serve.py)
            on_server(server)
        return server

    url = public_url(listener)
    return Supervisor(workers, make_server).run(on_ready=lambda: on_ready(url))
