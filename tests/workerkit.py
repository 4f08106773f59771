"""Which worker of ``vmregistry serve -workers N`` serves what: connections pinned to workers, read from ``/proc``.

A keep-alive connection stays with the worker that accepted it, so a test that
holds one connection per worker (:func:`one_connection_per_worker`) decides
which process serves each step of a flow. Which worker holds a connection is
read from the kernel: the server-side socket of the connection is in that
worker's descriptor table. The workers themselves are read from the
supervisor's log (:func:`worker_pids`).
"""

from __future__ import annotations

import http.client
import os
import re
import time
from urllib.parse import urlsplit

from tests.conftest import RunningServer
from tests.httpclient import Reply

__all__ = ["WAIT", "Pinned", "alive", "one_connection_per_worker", "wait_until_gone", "worker_pids"]

WAIT = 30.0
"""Upper bound for things that happen on their own (a replacement worker, an exit): a hang guard only."""


def worker_pids(server: RunningServer) -> list[int]:
    """The workers alive, from the supervisor's "serving" lines (a replaced worker's line is followed by another)."""
    serving: dict[int, int] = {}
    for index, pid in re.findall(r"worker (\d+) serving \(pid (\d+)\)", server.logs()):
        serving[int(index)] = int(pid)
    return [serving[i] for i in sorted(serving)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + WAIT
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def _socket_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if (local_port, remote_port) == (server_port, client_port):
                    return int(fields[9])
    return None


def _holder(pids: list[int], inode: int) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except FileNotFoundError:
                continue
    return None


class Pinned:
    """A keep-alive connection, and the worker process that accepted it."""

    def __init__(self, url: str, workers: list[int]) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.request("GET", "/v1/")
        client_port = self.connection.sock.getsockname()[1]
        inode = _socket_inode(self.port, client_port)
        assert inode is not None
        self.worker = _holder(workers, inode)

    def request(
        self, method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        if target.startswith("http://"):  # a presigned URL: same server, any worker
            parts = urlsplit(target)
            target = f"{parts.path}?{parts.query}"
        self.connection.request(method, target, body=body, headers=headers or {})
        response = self.connection.getresponse()
        reply = Reply(response.status, response.headers, response.read())
        assert not response.will_close, f"{method} {target}: the server closed the connection ({reply.status})"
        return reply

    def close(self) -> None:
        self.connection.close()


def one_connection_per_worker(server: RunningServer) -> list[Pinned]:
    """Open connections until every worker holds one; keep one per worker, in worker order."""
    workers = worker_pids(server)
    held: dict[int, Pinned] = {}
    spare: list[Pinned] = []
    for _ in range(200):
        if len(held) == len(workers):
            break
        pinned = Pinned(server.url, workers)
        assert pinned.worker in workers
        if pinned.worker in held:
            spare.append(pinned)
        else:
            held[pinned.worker] = pinned
    for pinned in spare:
        pinned.close()
    assert len(held) == len(workers), "the kernel never handed a connection to some worker"
    return [held[pid] for pid in workers]
