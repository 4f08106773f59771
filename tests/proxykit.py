"""A real forward proxy on loopback for the client's proxy tests: Debian's tinyproxy, which logs what it relays.

``make test`` installs tinyproxy (``make proxy``). Each proxy is its own
``tinyproxy -d`` process with a throwaway configuration, on a free port, its
log in the test's directory; :meth:`Proxy.requests` reads back the request
lines it relayed (``GET http://host:port/path``, ``CONNECT host:port``), so a
test can tell what went through it and what did not.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from loopback.processes import free_port, stop

__all__ = ["TINYPROXY", "Proxy", "start_proxy"]

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


@dataclass
class Proxy:
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    credentials: tuple[str, str] | None

    @property
    def url(self) -> str:
        """The proxy's URL, with its credentials when it requires them."""
        user = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{user}127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy received, in order."""
        return _REQUEST.findall(self.log.read_text(errors="replace")) if self.log.exists() else []

    def stop(self) -> None:
        stop(self.process)


def start_proxy(directory: Path, credentials: tuple[str, str] | None = None) -> Proxy:
    """tinyproxy on a free loopback port; with ``credentials`` it demands Basic proxy authentication."""
    port = free_port()
    log = directory / f"tinyproxy-{port}.log"
    config = directory / f"tinyproxy-{port}.conf"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 600",
        f'LogFile "{log}"',
        "LogLevel Connect",  # one line per connection and per request relayed
        "MaxClients 64",
    ]
    if credentials:
        lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
    # No ConnectPort line: CONNECT is allowed to any port (the registries under test use random ones).
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [TINYPROXY, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return Proxy(port, log, process, credentials)
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"tinyproxy did not start on port {port}: {log.read_text() if log.exists() else ''}")
