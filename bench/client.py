"""The one client for both registries: curl, as a user would run it.

Each protocol step is one curl process, timed from the outside, so both
registries pay the same client costs: a blob push is the API call(s), then
the body; a pull is the API call and, for vmregistry, the redirect to its
data plane (``curl -L``). Small setup requests (manifests for the control
plane) go through urllib and are not timed.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.servers import Server

__all__ = ["BenchError", "Response", "api", "curl", "pull_blob", "push_blob"]


class BenchError(RuntimeError):
    """A registry answered something the protocol does not allow."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def curl(*args: str) -> Response:
    """Run curl with ``-i`` and split its answer (the last response, after redirects)."""
    done = subprocess.run(["curl", "-sS", "-i", *args], capture_output=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"curl {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
    raw = done.stdout
    # With -L or "100 Continue", several header blocks precede the body: keep the last.
    while True:
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status >= 200 and not (300 <= status < 400 and rest.startswith(b"HTTP/")):
            break
        raw = rest
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    return Response(status, headers, rest)


def _expect(response: Response, status: int, what: str) -> Response:
    if response.status != status:
        raise BenchError(f"{what}: HTTP {response.status}, expected {status}: {response.body[:300]!r}")
    return response


def push_blob(server: Server, repo: str, path: Path, digest: str, size: int) -> None:
    """Push ``path`` through the registry's real upload protocol, with curl."""
    base = f"{server.url}{server.api}/{repo}/blobs/uploads/"
    if server.api == "/v2":
        # distribution: open a session, then one monolithic PUT with the body.
        started = _expect(curl("-X", "POST", base), 202, "POST upload")
        location = started.headers["location"]
        location = location if location.startswith("http") else server.url + location
        sep = "&" if "?" in location else "?"
        _expect(curl("-X", "PUT", "-T", str(path), f"{location}{sep}digest={digest}"), 201, "PUT blob")
        return
    # vmregistry: open a session bound to digest and size, PUT the body to the presigned URL, complete.
    started = _expect(curl("-X", "POST", f"{base}?digest={digest}&size={size}"), 202, "POST upload")
    session = json.loads(started.body)
    upload = session["upload"]
    headers = [arg for key, value in upload.get("headers", {}).items() for arg in ("-H", f"{key}: {value}")]
    _expect(curl("-X", upload["method"], *headers, "-T", str(path), upload["url"]), 200, "PUT data plane")
    location = session["location"]
    location = location if location.startswith("http") else server.url + location
    _expect(curl("-X", "PUT", f"{location}?digest={digest}"), 201, "complete upload")


def pull_blob(server: Server, repo: str, digest: str, output: str = "/dev/null") -> None:
    """GET the blob (following vmregistry's redirect) into ``output``."""
    done = subprocess.run(
        ["curl", "-sS", "-L", "-o", output, "-w", "%{http_code}", f"{server.url}{server.api}/{repo}/blobs/{digest}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or done.stdout.strip() != "200":
        raise BenchError(f"pull {digest}: HTTP {done.stdout.strip()} {done.stderr.strip()}")


def api(
    server: Server, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Response:
    """An untimed setup request (urllib: no process per call)."""
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
