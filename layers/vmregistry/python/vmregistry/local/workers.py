"""Pre-forked workers for ``vmregistry serve -workers N``: one listening socket, N processes.

One interpreter runs Python on one core at a time (the GIL), so a single
process cannot use a second core however many request threads it has. The
parent binds the socket, decides what every worker must share, then forks the
workers; each accepts connections on the inherited socket and serves them
exactly as the single-process server does. Nothing a request flow needs lives
in a worker's memory: upload sessions, parts and verification results are in
storage, and the data plane's URLs are signed with one key, so any worker can
serve any request of any flow.

The parent (the supervisor):

* owns no thread and no storage client before it forks: a thread holding a
  lock at ``fork`` leaves that lock held forever in the child, and a boto3
  connection pool must not be shared by two processes. Each worker builds its
  own server (storage, access-log writer, verifier threads) after the fork;
* starts the workers one at a time, each saying over a pipe that it is ready,
  so a second worker never races the first to create an S3 bucket, and the
  caller announces the URL only when every worker accepts;
* waits for signals. SIGTERM, SIGINT or SIGHUP stop the group: each worker
  gets SIGTERM, stops accepting and exits; one still alive after
  :data:`STOP_GRACE` seconds is killed. A worker that dies on its own after it
  was ready (the OOM killer, ``kill -9``, a crash in native code) is replaced:
  the others kept serving and the socket stayed open, so only the connections
  of the dead one were lost, and replacing it restores the capacity the
  operator asked for. A worker that dies *before* it is ready would die again
  (bad configuration, storage out of reach): the group stops instead of
  looping, and :meth:`Supervisor.run` returns that worker's exit status.

A worker dies with its parent even when the parent is killed outright: it
holds the read end of a pipe that only the parent holds open for writing,
and end-of-file on it means the parent is gone.

What stays per worker, by design: the authorizer's result cache (a token is
verified once per worker, as once per API Gateway cache node) and the
handlers' warm state, as in separate Lambda execution environments.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["STOP_GRACE", "SUPPORTED", "Server", "Supervisor", "default_workers"]

log = logging.getLogger("vmregistry.local.workers")

STOP_GRACE = 10.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_WAITED = {signal.SIGCHLD, *_STOP_SIGNALS}
_READY = b"r"

SUPPORTED = hasattr(os, "fork") and hasattr(signal, "sigwaitinfo")
"""Whether this platform can run workers (not Windows: no fork; not macOS: no ``sigwaitinfo``)."""


def default_workers() -> int:
    """One worker per CPU this process may run on (1 where workers are not :data:`SUPPORTED`)."""
    if not SUPPORTED:
        return 1
    counted = getattr(os, "process_cpu_count", None)  # Python 3.13: honours the affinity mask
    if counted is not None:
        return int(counted() or 1)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _StartFailed(Exception):
    def __init__(self, index: int, status: int) -> None:
        super().__init__(f"worker {index} exited before it was ready ({_describe(status)})")
        self.exit_code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _on_sigchld(signum: int, frame: object) -> None:
    """Never runs (SIGCHLD is blocked and taken by ``sigwaitinfo``); with no handler the kernel may drop it."""


class Server(Protocol):
    """What a worker runs: serve until :meth:`shutdown` (called from another thread)."""

    def serve_forever(self) -> None: ...

    def shutdown(self) -> None: ...


class Supervisor:
    """Runs ``count`` workers, each serving ``make_server(index)``; worker 0 runs the upload sweep."""

    def __init__(self, count: int, make_server: Callable[[int], Server]) -> None:
        self.count = count
        self.make_server = make_server
        self.workers: dict[int, int] = {}
        """Process id -> worker index, for the workers alive."""
        self._mask: set[int | signal.Signals] = set()

    def run(self, on_ready: Callable[[], None] = lambda: None) -> int:
        """Start the workers, call ``on_ready``, supervise until told to stop; the exit status."""
        signal.signal(signal.SIGCHLD, _on_sigchld)
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
        lifeline_read, self._lifeline = os.pipe()
        try:
            for index in range(self.count):
                self._start(index, lifeline_read)
            on_ready()
            return self._supervise(lifeline_read)
        except _StartFailed as exc:
            log.error("%s; stopping", exc)
            return exc.exit_code or 1
        finally:
            self._stop_all()
            os.close(lifeline_read)
            os.close(self._lifeline)
            self._drain_signals()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)

    # -- the parent ----------------------------------------------------------------------------

    def _start(self, index: int, lifeline: int) -> None:
        ready_read, ready_write = os.pipe()
        # Whatever is still buffered would be written again by the child.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(ready_read)
            code = 1
            try:
                code = self._worker(index, lifeline, ready_write)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(ready_write)
        self.workers[pid] = index
        with os.fdopen(ready_read, "rb") as ready:
            answer = ready.read(1)
        if answer != _READY:
            _, status = os.waitpid(pid, 0)
            del self.workers[pid]
            raise _StartFailed(index, status)
        log.info("worker %d serving (pid %d)", index, pid)

    def _supervise(self, lifeline: int) -> int:
        while True:
            received = signal.sigwaitinfo(_WAITED)
            if received.si_signo != signal.SIGCHLD:
                log.info("%s: stopping %d workers", signal.Signals(received.si_signo).name, len(self.workers))
                return 0
            for pid, status in self._reap():
                index = self.workers.pop(pid)
                log.error("worker %d (pid %d) died (%s); starting another", index, pid, _describe(status))
                self._start(index, lifeline)

    def _reap(self) -> Iterator[tuple[int, int]]:
        """The workers that have exited, collected without waiting."""
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.workers:
                yield pid, status

    def _stop_all(self) -> None:
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.workers:
            for pid, _status in self._reap():
                del self.workers[pid]
            remaining = deadline - time.monotonic()
            if not self.workers:
                break
            if remaining <= 0:
                for pid in self.workers:
                    log.warning("worker %d (pid %d) ignored SIGTERM; killing it", self.workers[pid], pid)
                    _signal(pid, signal.SIGKILL)
                for pid in list(self.workers):
                    os.waitpid(pid, 0)
                    del self.workers[pid]
                break
            signal.sigtimedwait({signal.SIGCHLD}, remaining)

    def _drain_signals(self) -> None:
        """Take the signals that arrived while stopping, so unblocking them does not deliver them."""
        while pending := signal.sigpending() & _WAITED:
            signal.sigtimedwait(pending, 0)

    # -- a worker ------------------------------------------------------------------------------

    def _worker(self, index: int, lifeline: int, ready: int) -> int:
        os.close(self._lifeline)  # only the parent may hold it open, or end-of-file never comes
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            server = self.make_server(index)
        except Exception as exc:
            log.error("worker %d could not start: %s", index, exc)
            return 2

        def stop(signum: int, frame: object) -> None:
            # shutdown() waits for serve_forever to return, and serve_forever runs on this thread.
            threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

        for signum in _STOP_SIGNALS:
            signal.signal(signum, stop)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        threading.Thread(target=_watch_parent, args=(lifeline,), name="parent-watch", daemon=True).start()
        os.write(ready, _READY)
        os.close(ready)
        server.serve_forever()
        return 0


def _watch_parent(lifeline: int) -> None:
    while os.read(lifeline, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it died meanwhile: the next reap collects it
        os.kill(pid, signum)
