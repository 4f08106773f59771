"""A free loopback port, and a stop that does not hang: for every server a harness starts as a child process."""

from __future__ import annotations

import socket
import subprocess

__all__ = ["STOP_GRACE", "free_port", "stop"]

STOP_GRACE = 10.0
"""Seconds a process gets to exit after SIGTERM before it is killed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (nothing listens on it once this returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL if it is still alive after ``grace`` seconds; reaped either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
