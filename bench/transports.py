"""Which HTTP library should carry the client's blob bytes: http.client, urllib3 or httpx, measured.

The question (issue 18): proxies, pools, retries and TLS are an HTTP
library's job, so should the reference client's hand-written transport give
way to urllib3 or httpx? Only if push and pull throughput do not drop. This
measures exactly the part a library would change, the bytes of one blob on
the data plane, against the same ``vmregistry serve``:

- push: one presigned single PUT of the whole file (``Content-Length`` set,
  the body read from the file in 1 MiB blocks), the server hashing it as it
  streams;
- pull: one GET of the presigned URL the registry redirects to, the body read
  into a reused 1 MiB buffer and dropped (the client's disk is not measured).

Each library does it the way its documentation recommends for large bodies
(http.client: ``blocksize`` and ``readinto``; urllib3: a pool with a 1 MiB
``blocksize`` and ``preload_content=False``; httpx: a byte iterator and
``iter_raw``). The libraries alternate within each run, so a burst of load
from elsewhere hits them all. The untimed API calls (open the session,
complete it, ask for the redirect) go through urllib.

The row ``vmregistry.client`` is the whole reference client (``push_blob`` /
``pull_blob``: HEAD, session, the PUT, completion; redirect, ranged GETs of
32 MiB by 4 threads, sparse writes, the final hash), for scale.

Run: ``python -m bench.transports [--size 1G] [--runs 5]``. httpx is not a
dependency of the project: ``make bench`` installs it (bench/requirements.txt);
without it, its row is left out.

``--clients before=DIR after=DIR`` compares versions of the reference client
instead (A/B): each run pushes and pulls the blob once with each version, in
alternation, each in its own interpreter importing ``vmregistry`` from DIR
(e.g. a ``git worktree`` of another commit's ``layers/vmregistry/python``),
timed inside that interpreter, against the same server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.servers import Server, start_vmregistry
from bench.throughput import MIB, make_blob, rate, summarise, vary

__all__ = ["LIBRARIES", "main", "measure_transports"]

BLOCK = MIB

Put = Callable[[str, dict[str, str], Path, int], None]
Get = Callable[[str, int], None]


def _check(status: int, expected: tuple[int, ...], what: str) -> None:
    if status not in expected:
        raise RuntimeError(f"{what}: HTTP {status}")


# -- http.client: what the client uses today -----------------------------------


def _httpclient_connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=300, blocksize=BLOCK)
    return connection, parts.path + (f"?{parts.query}" if parts.query else "")


def put_httpclient(url: str, headers: dict[str, str], path: Path, size: int) -> None:
    connection, target = _httpclient_connection(url)
    try:
        with open(path, "rb") as body:
            connection.request("PUT", target, body=body, headers=headers | {"Content-Length": str(size)})
            response = connection.getresponse()
            response.read()
            _check(response.status, (200, 201, 204), "http.client PUT")
    finally:
        connection.close()


def get_httpclient(url: str, size: int) -> None:
    connection, target = _httpclient_connection(url)
    buffer = memoryview(bytearray(BLOCK))
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        _check(response.status, (200,), "http.client GET")
        received = 0
        while n := response.readinto(buffer):
            received += n
        if received != size:
            raise RuntimeError(f"http.client GET: {received} of {size} bytes")
    finally:
        connection.close()


# -- urllib3 --------------------------------------------------------------------


def put_urllib3(url: str, headers: dict[str, str], path: Path, size: int) -> None:
    import urllib3

    with urllib3.PoolManager(blocksize=BLOCK) as pool, open(path, "rb") as body:
        response = pool.request(
            "PUT", url, body=body, headers=headers | {"Content-Length": str(size)}, redirect=False, retries=False
        )
        _check(response.status, (200, 201, 204), "urllib3 PUT")


def get_urllib3(url: str, size: int) -> None:
    import urllib3

    buffer = memoryview(bytearray(BLOCK))
    with urllib3.PoolManager(blocksize=BLOCK) as pool:
        response = pool.request("GET", url, preload_content=False, redirect=False, retries=False)
        _check(response.status, (200,), "urllib3 GET")
        received = 0
        while n := response.readinto(buffer):
            received += n
        response.release_conn()
    if received != size:
        raise RuntimeError(f"urllib3 GET: {received} of {size} bytes")


# -- httpx ----------------------------------------------------------------------


def _blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            yield block


def put_httpx(url: str, headers: dict[str, str], path: Path, size: int) -> None:
    import httpx

    with httpx.Client(timeout=300, trust_env=False) as client:
        response = client.put(url, content=_blocks(path), headers=headers | {"Content-Length": str(size)})
        _check(response.status_code, (200, 201, 204), "httpx PUT")


def get_httpx(url: str, size: int) -> None:
    import httpx

    received = 0
    with httpx.Client(timeout=300, trust_env=False) as client, client.stream("GET", url) as response:
        _check(response.status_code, (200,), "httpx GET")
        for block in response.iter_raw(BLOCK):
            received += len(block)
    if received != size:
        raise RuntimeError(f"httpx GET: {received} of {size} bytes")


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


LIBRARIES: dict[str, tuple[Put, Get]] = {
    "http.client": (put_httpclient, get_httpclient),
    "urllib3": (put_urllib3, get_urllib3),
    # httpx is bench/requirements.txt's, not the project's: measured where `make bench` installed it.
    **({"httpx": (put_httpx, get_httpx)} if _installed("httpx") else {}),
}


# -- the protocol around the timed requests (untimed) ----------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _api(method: str, url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with _opener.open(request, timeout=600) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def _push(server: Server, repo: str, put: Put, path: Path, digest: str, size: int) -> float:
    status, _, body = _api("POST", f"{server.url}/v1/{repo}/blobs/uploads/?digest={digest}&size={size}")
    _check(status, (202,), "POST upload")
    session = json.loads(body)
    upload = session["upload"]
    speed = rate(size, lambda: put(upload["url"], dict(upload.get("headers") or {}), path, size))
    status, _, body = _api("PUT", f"{server.url}{session['location']}?digest={digest}")
    _check(status, (201,), f"complete upload {body[:200]!r}")
    return speed


def _pull(server: Server, repo: str, get: Get, digest: str, size: int) -> float:
    status, headers, _ = _api("GET", f"{server.url}/v1/{repo}/blobs/{digest}")
    _check(status, (307,), "GET blob")
    location = headers["location"]
    url = location if "://" in location else server.url + location
    return rate(size, lambda: get(url, size))


def _client_row(server: Server, repo: str, path: Path, digest: str, size: int, work: Path) -> tuple[float, float]:
    from vmregistry.client import Blob, Progress, PullOptions, PushOptions, RegistryClient, pull_blob, push_blob

    quiet = Progress(mode="quiet")
    target = work / "pulled"
    with RegistryClient.connect(server.url) as client:
        blob = Blob(path.name, digest, size, path=path)
        pushed = rate(size, lambda: push_blob(client, repo, blob, PushOptions(state_root=work / "state"), quiet))
        pulled = rate(size, lambda: pull_blob(client, repo, digest, size, target, PullOptions(), quiet))
    target.unlink()
    return pushed, pulled


def measure_transports(server: Server, source: Path, size: int, runs: int, work: Path) -> dict[str, Any]:
    """Push and pull MiB/s of one data-plane request per library, and of the whole reference client."""
    names = [*LIBRARIES, "vmregistry.client"]
    push: dict[str, list[float]] = {name: [] for name in names}
    pull: dict[str, list[float]] = {name: [] for name in names}
    repo = f"bench/transports-{size}"
    for run in range(runs):
        for index, name in enumerate(names):
            digest = vary(source, run * len(names) + index + 1)  # every push is a blob the registry lacks
            if name == "vmregistry.client":
                pushed, pulled = _client_row(server, repo, source, digest, size, work)
            else:
                put, get = LIBRARIES[name]
                pushed = _push(server, repo, put, source, digest, size)
                pulled = _pull(server, repo, get, digest, size)
            push[name].append(pushed)
            pull[name].append(pulled)
    return {
        "size_mib": size // MIB,
        "push": {name: summarise(values) for name, values in push.items()},
        "pull": {name: summarise(values) for name, values in pull.items()},
    }


_CLIENT_RUN = """
import json, sys, time
from pathlib import Path
from vmregistry.client import Blob, Progress, PullOptions, PushOptions, RegistryClient, pull_blob, push_blob
url, repo, path, digest, size, work = sys.argv[1:7]
size, work, quiet = int(size), Path(work), Progress(mode="quiet")
with RegistryClient.connect(url) as client:
    started = time.perf_counter()
    push_blob(client, repo, Blob("blob", digest, size, path=Path(path)), PushOptions(state_root=work / "s"), quiet)
    pushed = time.perf_counter() - started
    started = time.perf_counter()
    pull_blob(client, repo, digest, size, work / "pulled", PullOptions(), quiet)
    pulled = time.perf_counter() - started
(work / "pulled").unlink()
print(json.dumps([size / 1048576 / pushed, size / 1048576 / pulled]))
"""


def measure_clients(
    server: Server, source: Path, size: int, runs: int, work: Path, versions: dict[str, str]
) -> dict[str, Any]:
    """Push and pull MiB/s of each version of the reference client (label -> directory it imports from)."""
    push: dict[str, list[float]] = {label: [] for label in versions}
    pull: dict[str, list[float]] = {label: [] for label in versions}
    for run in range(runs):
        for index, (label, directory) in enumerate(versions.items()):
            digest = vary(source, run * len(versions) + index + 1)
            env = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")} | {
                "PYTHONPATH": str(Path(directory).resolve())
            }
            args = [server.url, f"bench/clients-{size}", str(source), digest, str(size), str(work)]
            done = subprocess.run(
                [sys.executable, "-c", _CLIENT_RUN, *args], env=env, capture_output=True, text=True, check=True
            )
            pushed, pulled = json.loads(done.stdout)
            push[label].append(pushed)
            pull[label].append(pulled)
    return {
        "size_mib": size // MIB,
        "push": {name: summarise(values) for name, values in push.items()},
        "pull": {name: summarise(values) for name, values in pull.items()},
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("urllib3", "httpx", "httpcore", "h11"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.run import parse_size

    parser = argparse.ArgumentParser(prog="python -m bench.transports", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1G"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="vmregistry serve -workers")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    parser.add_argument(
        "--clients", nargs="+", metavar="LABEL=DIR", help="compare versions of the client instead (A/B)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-transports-") as scratch:
        work = Path(scratch)
        source, _ = make_blob(work, args.size)
        with start_vmregistry(work, workers=args.workers) as server:
            if args.clients:
                versions = dict(item.split("=", 1) for item in args.clients)
                result = measure_clients(server, source, args.size, args.runs, work, versions)
            else:
                result = measure_transports(server, source, args.size, args.runs, work)
    result |= {"versions": _versions(), "load": round(os.getloadavg()[0], 2)}
    print(f"{'MiB/s':<20} {'push median (min-max)':>24} {'pull median (min-max)':>24}")
    for name in result["push"]:
        p, g = result["push"][name], result["pull"][name]
        print(f"{name:<20} {p['median']:>10} ({p['min']}-{p['max']}){'':>4} {g['median']:>10} ({g['min']}-{g['max']})")
    print(json.dumps({"versions": result["versions"], "load": result["load"]}))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
