"""Manifest PUT latency against the number of layers it lists (issue 19), on the filesystem and on S3.

A manifest is stored only if the repository holds every blob it lists, so a
PUT costs storage lookups that grow with what the client lists. Cases, each
a ``PUT /v1/<name>/manifests/<tag>`` timed with curl (``time_total``):

* 10, 1,000 and the cap's number of layers
  (:data:`vmregistry.oci.manifests.MAX_DESCRIPTORS`, read from the code), each
  layer a distinct blob pushed beforehand;
* the cap's number of layers that all name **one** blob (one distinct lookup
  is all a registry needs);
* one layer over the cap, once: the answer (400 MANIFEST_INVALID naming the
  cap, where the cap is enforced) and how long it took.

Every timed PUT stores a manifest the registry has not seen (its config is a
blob of its own), so no run is a re-tag of a known digest. The blobs are
pushed through the API (monolithic ``PUT /v1/<name>/blobs/<digest>``,
eight at a time) and are not timed. On S3 the registry runs against
LocalStack on the same two cores; issue 19's target is the cap's layers
validated in under 5 s there. The result records which validation the
measured code has (``vmregistry.registry.references``: distinct blobs,
concurrently; before it: one lookup per descriptor, in order).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import statistics
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.client import BenchError
from bench.control import VM_CONFIG, VM_DISK, VM_MANIFEST
from bench.servers import Server, Unavailable, local_s3, start_vmregistry

__all__ = ["REPOSITORY", "TARGET_S", "cap", "measure", "render", "targets", "validation"]

REPOSITORY = "bench/layers"
TARGET_S = 5.0
PUSHERS = 8
RETRIES = 3


def cap() -> int:
    from vmregistry.oci.manifests import MAX_DESCRIPTORS

    return MAX_DESCRIPTORS


def validation() -> str:
    """How the measured code checks a manifest's references."""
    try:
        from vmregistry.registry.references import LOOKUPS  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "one lookup per descriptor, in order"
    try:
        from vmregistry.registry.references import LISTED, LISTING_MIN  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return f"one lookup per distinct blob, {LOOKUPS} at a time"
    return (
        f"one lookup per distinct blob, {LOOKUPS} at a time; from {LISTING_MIN} distinct blobs on, where"
        f" storage lists content MD5s (S3), sorted listings of the repository's links, {LISTED:,} keys a request"
    )


def _push_all(server: Server, blobs: list[bytes]) -> int:
    """PUT every blob (monolithic), ``PUSHERS`` at a time; returns how many PUTs had to be sent again.

    A retry is counted, not hidden: concurrent monolithic PUTs on the filesystem
    backend used to lose the connection now and then (a staged body's
    ``uploads/<id>/`` was created while another request pruned the empty
    ``uploads/``; fixed in 7b53ab5, and the count shows it stays fixed).
    """
    address = urllib.parse.urlsplit(server.url)
    retried: list[str] = []

    def push_once(data: bytes) -> None:
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=60)
        try:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            connection.request("PUT", f"/v1/{REPOSITORY}/blobs/{digest}", body=data)
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        if answer.status != 201:
            raise BenchError(f"PUT blob: HTTP {answer.status} {body[:300]!r}")

    def push(data: bytes) -> None:
        for attempt in range(RETRIES):
            try:
                push_once(data)
                return
            except (http.client.HTTPException, ConnectionError):
                if attempt == RETRIES - 1:
                    raise
                retried.append("x")

    with ThreadPoolExecutor(PUSHERS) as pool:
        for _ in pool.map(push, blobs):
            pass
    return len(retried)


def _descriptor(media: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def _manifest(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": VM_MANIFEST,
            "config": _descriptor(VM_CONFIG, config),
            "layers": [_descriptor(VM_DISK, layer) for layer in layers],
        }
    ).encode()


def _put(server: Server, tag: str, body: bytes, home: Path) -> tuple[int, float, bytes]:
    source, answer = home / "manifest.json", home / "answer.json"
    source.write_bytes(body)
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "300",
            "-X",
            "PUT",
            "-H",
            f"Content-Type: {VM_MANIFEST}",
            "--data-binary",
            f"@{source}",
            "-o",
            str(answer),
            "-w",
            "%{http_code} %{time_total}",
            f"{server.url}/v1/{REPOSITORY}/manifests/{tag}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, seconds = done.stdout.strip().partition(" ")
    if done.returncode != 0:
        raise BenchError(f"PUT manifest {tag}: curl failed: {done.stderr.strip()}")
    return int(status), float(seconds) * 1000, answer.read_bytes()


def _measure(server: Server, counts: list[int], runs: int, home: Path, log: Callable[[str], None]) -> dict[str, Any]:
    limit = cap()
    cases = [(str(count), count, False) for count in counts] + [(f"{limit} repeated", limit, True)]
    layers = [os.urandom(32) for _ in range(max(counts))]
    configs = [json.dumps({"case": name, "run": run, "nonce": os.urandom(8).hex()}).encode() for name, _, _ in cases
               for run in range(runs)]  # fmt: skip
    started = time.perf_counter()
    retried = _push_all(server, layers + configs)
    out: dict[str, Any] = {
        "blobs_pushed": len(layers) + len(configs),
        "push_s": round(time.perf_counter() - started, 1),
        "push_retries": retried,
    }
    out["cases"] = {}
    config = iter(configs)
    for name, count, repeated in cases:
        log(f"manifest PUT, {name} layers")
        samples = []
        for run in range(runs):
            chosen = [layers[0]] * count if repeated else layers[:count]
            status, ms, answer = _put(server, f"c{name.replace(' ', '-')}-{run}", _manifest(next(config), chosen), home)
            if status != 201:
                raise BenchError(f"PUT manifest with {name} layers: HTTP {status} {answer[:300]!r}")
            samples.append(ms)
        out["cases"][name] = {
            "layers": count,
            "distinct": 1 if repeated else count,
            "ms": round(statistics.median(samples), 1),
            "min": round(min(samples), 1),
            "max": round(max(samples), 1),
            "runs": runs,
        }
    status, ms, answer = _put(server, "over-cap", _manifest(configs[0], [layers[0]] * (limit + 1)), home)
    try:
        codes = [error.get("code") for error in json.loads(answer).get("errors", [])]
    except ValueError:
        codes = []
    out["over_cap"] = {"layers": limit + 1, "status": status, "codes": codes, "ms": round(ms, 1)}
    return out


def measure(runs: int, s3_runs: int, work: Path, log: Callable[[str], None], s3: bool, quick: bool) -> dict[str, Any]:
    counts = [10, 50] if quick else [10, 1000, cap()]
    out: dict[str, Any] = {"cap": cap(), "validation": validation(), "commit": _commit()}
    home = work / "manifest-put"
    home.mkdir()
    with start_vmregistry(home) as server:
        out["filesystem"] = _measure(server, counts, runs, home, log)
    if not s3:
        out["s3"] = {"skipped": "--quick: LocalStack not started"}
        return out
    try:
        with local_s3(home) as localstack:
            env = localstack.env("layers")
            with start_vmregistry(home, env, "-storage", "s3") as server:
                out["s3"] = _measure(server, counts, s3_runs, home, log)
    except Unavailable as exc:
        out["s3"] = {"skipped": str(exc)}
    return out


def _commit() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,
        check=False,
    )
    return done.stdout.strip() or None


# -- report -----------------------------------------------------------------------------------


def render(result: dict[str, Any]) -> list[str]:
    measured = result.get("manifest_put") or {}
    if not measured:
        return []
    backends = {"filesystem": measured.get("filesystem") or {}, "S3 (LocalStack)": measured.get("s3") or {}}
    out = [
        "## Manifest PUT against the number of layers (issue 19)",
        "",
        f"ms per `PUT /v1/<name>/manifests/<tag>`, median (min-max), curl `time_total`; the cap is"
        f" {measured['cap']:,} descriptors (`MAX_DESCRIPTORS`); the measured code (commit"
        f" {measured.get('commit') or '?'}) validates with {measured['validation']}.",
        "",
        "| Layers | Distinct blobs | " + " | ".join(backends) + " |",
        "|---|---|" + "---|" * len(backends),
    ]
    names = next((list(b["cases"]) for b in backends.values() if "cases" in b), [])
    for name in names:
        cells, first = [], None
        for backend in backends.values():
            entry = (backend.get("cases") or {}).get(name)
            first = first or entry
            cells.append(f"{entry['ms']:,.0f} ({entry['min']:,.0f}-{entry['max']:,.0f})" if entry else "-")
        if first:
            out.append(f"| {first['layers']:,} | {first['distinct']:,} | {' | '.join(cells)} |")
    over = [(label, b["over_cap"]) for label, b in backends.items() if "over_cap" in b]
    if over:
        shown = "; ".join(
            f"{label}: HTTP {entry['status']} {'/'.join(entry['codes']) or ''} in {entry['ms']:,.0f} ms"
            for label, entry in over
        )
        out += ["", f"One layer over the cap ({measured['cap'] + 1:,} layers, one blob): {shown}."]
    for label, backend in backends.items():
        if "skipped" in backend:
            out += ["", f"{label}: not measured: {backend['skipped']}"]
        elif "push_s" in backend:
            out.append(
                f"\n{label}: {backend['blobs_pushed']:,} blobs pushed beforehand in {backend['push_s']} s"
                f" ({backend.get('push_retries', 0)} PUTs sent again after a dropped connection)."
            )
    return [*out, ""]


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    measured = result.get("manifest_put") or {}
    entry = ((measured.get("s3") or {}).get("cases") or {}).get(str(measured.get("cap")))
    if not entry:
        return []
    seconds = entry["ms"] / 1000
    return [
        (
            f"manifest PUT, the cap's {measured['cap']:,} distinct layers, < {TARGET_S:g} s on LocalStack",
            f"{seconds:.1f} s",
            seconds < TARGET_S,
        )
    ]
