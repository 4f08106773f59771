"""Catalog and tags pages (issue 17): latency at the start and deep in the listing, and what a page costs in memory.

Per dataset (4,000 repositories and a repository with 4,000 tags; 40,000 and
10,000), both registries get the same data (:mod:`bench.listing_data`
explains how it is written and checked) and each is asked, with curl
(``time_total``, one process per request), for four pages of 100:

* ``catalog_start``: ``_catalog?n=100``;
* ``catalog_deep``: ``_catalog?n=100&last=<the 150th name from the end>``;
* ``tags_start`` and ``tags_deep``: the same for ``<name>/tags/list``.

Each page is read once untimed first (the dentry cache is warm, as on a
registry in use), then timed ``runs`` times, the registries alternating.

Where the data lives: ``/dev/shm`` (tmpfs) for the 4k and 40k sets. This
machine's root filesystem is ext4 mounted with ``discard``, where removing
the 40k set's ~900,000 files and directories one by one (each freed block
discarded) takes many minutes and loads a disk other work shares; on tmpfs
the sets are written in seconds and removed at once. A warm page is read from
the kernel's dentry and inode caches on either filesystem, but the directory
reads differ (ext4 returns a large directory in hash order from its blocks,
tmpfs walks its dentries), so the ``disk`` set repeats the pages on ext4 in
the work directory: 4,000 repositories and the 40k set's 10,000 tags.
vmregistry runs with one worker here, so one process serves every request
and its ``VmRSS`` before and after the first deep catalog page (after a
start page, so the handler's imports are not counted) says whether a page's
memory grows with the registry; distribution's is read the same way.

In S3 mode (LocalStack) only vmregistry is measured, on a bucket holding the
catalog entries and tags of the same datasets.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.client import BenchError
from bench.listing_data import (
    TAGGED,
    Dataset,
    check_through_api,
    file_count,
    load_s3,
    read_page,
    write_distribution,
    write_vmregistry,
)
from bench.servers import Server, Unavailable, local_s3, start_distribution, start_vmregistry

__all__ = ["CASES", "DATASETS", "QUICK_DATASETS", "default_data_dir", "measure", "render", "targets"]

PAGE = 100
DEEP = PAGE + 50
"""The deep cursor is the name this far from the end: the page after it is full and has a next page."""
CASES = ("catalog_start", "catalog_deep", "tags_start", "tags_deep")
DATASETS = [
    Dataset("4k", 4000, 4000),
    Dataset("40k", 40000, 10000),
    # The same pages on the disk's ext4, to show what tmpfs changes; the 10,000 tags of the 40k set, not
    # its 40,000 repositories (their ~900,000 files and directories, removed one by one on a filesystem
    # mounted with `discard`, took minutes).
    Dataset("disk", 4000, 10000, on_disk=True),
]
QUICK_DATASETS = [Dataset("quick", 300, 300)]
MIB = 1024 * 1024
RSS_SLACK_MIB = 2.0
"""How much more a deep page at the large dataset may add to RSS than at the small one (allocator noise)."""


def _cases(dataset: Dataset) -> dict[str, tuple[str, str, list[str]]]:
    names, tags = dataset.names(), dataset.tag_names()
    deep_name, deep_tag = len(names) - DEEP, len(tags) - DEEP
    quote = urllib.parse.quote
    return {
        "catalog_start": (f"/_catalog?n={PAGE}", "repositories", names[:PAGE]),
        "catalog_deep": (
            f"/_catalog?n={PAGE}&last={quote(names[deep_name], safe='')}",
            "repositories",
            names[deep_name + 1 : deep_name + 1 + PAGE],
        ),
        "tags_start": (f"/{TAGGED}/tags/list?n={PAGE}", "tags", tags[:PAGE]),
        "tags_deep": (
            f"/{TAGGED}/tags/list?n={PAGE}&last={quote(tags[deep_tag], safe='')}",
            "tags",
            tags[deep_tag + 1 : deep_tag + 1 + PAGE],
        ),
    }


def _time_ms(url: str) -> float:
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", url],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, seconds = done.stdout.strip().partition(" ")
    if done.returncode != 0 or status != "200":
        raise BenchError(f"GET {url}: HTTP {status} {done.stderr.strip()}")
    return float(seconds) * 1000


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "ms": round(statistics.median(samples), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
        "runs": len(samples),
    }


def _memory(server: Server, path: str) -> dict[str, float]:
    """VmRSS before and after one deep page (after a start page has loaded the handler), and VmHWM."""
    _time_ms(f"{server.url}{server.api}/_catalog?n={PAGE}")
    before = server.status_field("VmRSS")
    _time_ms(server.url + server.api + path)
    after = server.status_field("VmRSS")
    return {
        "rss_before_mib": round(before / MIB, 1),
        "rss_after_mib": round(after / MIB, 1),
        "growth_mib": round((after - before) / MIB, 1),
        "hwm_mib": round(server.status_field("VmHWM") / MIB, 1),
    }


def _measure_servers(servers: list[Server], dataset: Dataset, runs: int) -> dict[str, Any]:
    cases = _cases(dataset)
    out: dict[str, Any] = {"cases": {case: {} for case in CASES}, "checks": {}, "memory": {}}
    for server in servers:
        out["memory"][server.name] = _memory(server, cases["catalog_deep"][0])
        out["checks"][server.name] = check_through_api(server, dataset, cases)
    for case, (path, _, _) in cases.items():
        samples: dict[str, list[float]] = {server.name: [] for server in servers}
        for _ in range(runs):
            for server in servers:
                samples[server.name].append(_time_ms(server.url + server.api + path))
        out["cases"][case] = {name: _summary(values) for name, values in samples.items()}
    return out


def default_data_dir(work: Path) -> Path:
    """``/dev/shm`` where there is one (see the module docstring), else the work directory."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else work


def _filesystem(
    dataset: Dataset, runs: int, use_distribution: bool, data: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"vmregistry-bench-listing-{dataset.label}-", dir=data))
    entry: dict[str, Any] = {
        "repositories": dataset.repositories,
        "tags": dataset.tags,
        "storage": "disk" if dataset.on_disk else "tmpfs",
        "load_s": {},
        "files": {},
    }
    writers = {"vmregistry": (write_vmregistry, home / "vmregistry-root")}
    if use_distribution:
        writers["distribution"] = (write_distribution, home / "distribution-root")
    for name, (write, root) in writers.items():
        log(f"listing {dataset.label}: writing {name}'s layout")
        started = time.perf_counter()
        write(root, dataset)
        entry["load_s"][name] = round(time.perf_counter() - started, 1)
        entry["files"][name] = file_count(root)
    servers = [start_vmregistry(home, workers=1)]
    try:
        if use_distribution:
            servers.append(start_distribution(home))
        log(f"listing {dataset.label}: pages")
        entry |= _measure_servers(servers, dataset, runs)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return entry


def _s3(datasets: list[Dataset], runs: int, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from vmregistry.config import Settings
    from vmregistry.storage.s3 import S3Storage

    home = work / "listing-s3"
    out: dict[str, Any] = {}
    try:
        with local_s3(home) as localstack:
            for dataset in datasets:
                env = localstack.env("listing")
                storage = S3Storage.from_settings(Settings.from_env(env))
                log(f"listing {dataset.label}: loading LocalStack")
                started = time.perf_counter()
                keys = load_s3(storage, dataset)
                entry: dict[str, Any] = {"keys": keys, "load_s": round(time.perf_counter() - started, 1)}
                with start_vmregistry(home, env, "-storage", "s3", workers=1) as server:
                    log(f"listing {dataset.label}: S3 pages")
                    cases = _cases(dataset)
                    for path, key, expected in cases.values():
                        _check_page(server, path, key, expected)
                    entry["cases"] = {}
                    for case, (path, _, _) in cases.items():
                        entry["cases"][case] = {
                            server.name: _summary([_time_ms(server.url + server.api + path) for _ in range(runs)])
                        }
                entry["direct"] = _direct_lists(storage, dataset, runs)
                storage.delete_prefix("")
                out[dataset.label] = entry
    except Unavailable as exc:
        return {"skipped": str(exc)}
    return out


def _direct_lists(storage: Any, dataset: Dataset, runs: int) -> dict[str, Any]:
    """One ``ListObjectsV2`` of the catalog straight from boto3: what LocalStack itself costs per request.

    With ``MaxKeys`` 1,000 (S3's default, what a page's listing asks for today) and
    with the 101 keys a page of 100 needs, at the start and after the deep cursor.
    """
    from vmregistry import paths

    deep = paths.catalog_key(dataset.names()[len(dataset.names()) - DEEP])
    out: dict[str, Any] = {}
    for label, keys, start in (("1000_start", 1000, None), ("101_start", PAGE + 1, None), ("101_deep", PAGE + 1, deep)):
        samples = []
        for _ in range(runs):
            arguments: dict[str, Any] = {"Bucket": storage.bucket, "Prefix": paths.CATALOG_PREFIX, "MaxKeys": keys}
            if start:
                arguments["StartAfter"] = start
            started = time.perf_counter()
            storage.client.list_objects_v2(**arguments)
            samples.append((time.perf_counter() - started) * 1000)
        out[label] = _summary(samples)
    return out


def _check_page(server: Server, path: str, key: str, expected: list[str]) -> None:
    if read_page(server, path, key) != expected:
        raise BenchError(f"{server.name}: {path} is not the expected page")


def measure(
    datasets: list[Dataset],
    runs: int,
    s3_runs: int,
    use_distribution: bool,
    work: Path,
    log: Callable[[str], None],
    s3: bool,
    data: Path | None = None,
) -> dict[str, Any]:
    """``{"page", "runs", "data_dir", "filesystem": {label: ...}, "s3": {label: ...} | {"skipped": why}}``.

    ``data``: where the filesystem layouts go (default :func:`default_data_dir`).
    """
    data = data or default_data_dir(work)
    out: dict[str, Any] = {"page": PAGE, "runs": runs, "s3_runs": s3_runs, "data_dir": str(data), "filesystem": {}}
    for dataset in datasets:
        where = work if dataset.on_disk else data
        out["filesystem"][dataset.label] = _filesystem(dataset, runs, use_distribution, where, log)
    s3 = s3 and any(not dataset.on_disk for dataset in datasets)
    datasets = [dataset for dataset in datasets if not dataset.on_disk]
    out["s3"] = _s3(datasets, s3_runs, work, log) if s3 else {"skipped": "--quick: LocalStack not started"}
    return out


# -- report -----------------------------------------------------------------------------------


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    return f"{entry['ms']:,.1f} ({entry['min']:,.1f}-{entry['max']:,.1f})"


def _label(case: str, dataset: dict[str, Any]) -> str:
    what, where = case.split("_")
    count = f"{dataset['repositories']:,} repositories" if what == "catalog" else f"{dataset['tags']:,} tags"
    if dataset.get("storage") == "disk":
        count += ", ext4 on disk"
    request = "`_catalog?n=100`" if what == "catalog" else "`tags/list?n=100`"
    return f"{request}, {'first page' if where == 'start' else 'deep (`last=` 150 from the end)'}, {count}"


def render(result: dict[str, Any]) -> list[str]:
    listing = result.get("listing") or {}
    if not listing:
        return []
    out = [
        "## Listing: catalog and tags pages (issue 17)",
        "",
        f"ms per page of {listing['page']}, median (min-max) of {listing['runs']}, curl `time_total`;"
        " same data in both registries (layouts written directly and checked through each API, see"
        " `bench/listing_data.py`); vmregistry on the filesystem with one worker.",
        "",
        "| Page | vmregistry | distribution | vmregistry / distribution |",
        "|---|---|---|---|",
    ]
    filesystem = listing.get("filesystem") or {}
    notes: list[str] = []
    for dataset in filesystem.values():
        for case in CASES:
            row = dataset["cases"].get(case) or {}
            ours, theirs = row.get("vmregistry"), row.get("distribution")
            ratio = f"{ours['ms'] / theirs['ms']:.2f}x" if ours and theirs and theirs["ms"] else "-"
            check = (dataset.get("checks") or {}).get("distribution", {}).get(case)
            if check and not check["expected"]:
                notes.append(f"distribution answered all {check['items']:,} tags to `tags/list?n=100`")
                ratio += " (\\*)"
            out.append(f"| {_label(case, dataset)} | {_cell(ours)} | {_cell(theirs)} | {ratio} |")
    for note in dict.fromkeys(notes):
        out.append(f"\n(\\*) {note}: distribution 2.8 ignores `n` and `last` there.")
    out += [
        "",
        "Server memory around the first deep catalog page (after a first page loaded the handler):",
        "",
        "| Data | Server | RSS before | RSS after | growth | peak (VmHWM) | files in its layout |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in filesystem.values():
        for name, memory in (dataset.get("memory") or {}).items():
            out.append(
                f"| {dataset['repositories']:,} repositories, {dataset.get('storage', '?')} | {name}"
                f" | {memory['rss_before_mib']} MiB"
                f" | {memory['rss_after_mib']} MiB | {memory['growth_mib']:+} MiB | {memory['hwm_mib']} MiB"
                f" | {dataset['files'].get(name, 0):,} |"
            )
    s3 = listing.get("s3") or {}
    out += ["", "S3 mode (LocalStack), vmregistry alone:", ""]
    if "skipped" in s3:
        out.append(f"Not measured: {s3['skipped']}")
    else:
        out += ["| Page | ms, median (min-max) | keys in the bucket |", "|---|---|---|"]
        for label, entry in s3.items():
            dataset = filesystem.get(label) or {"repositories": "?", "tags": "?"}
            for case in CASES:
                ours = (entry["cases"].get(case) or {}).get("vmregistry")
                shown = _label(case, dataset) if label in filesystem else f"{case} ({label})"
                out.append(f"| {shown} | {_cell(ours)} | {entry['keys']:,} |")
            direct = entry.get("direct") or {}
            for kind, text in (
                ("1000_start", "one `ListObjectsV2` of `catalog/`, MaxKeys 1,000, from the start (boto3, direct)"),
                ("101_start", "the same, MaxKeys 101"),
                ("101_deep", "the same, MaxKeys 101, after the deep cursor"),
            ):
                if kind in direct:
                    out.append(f"| {text} | {_cell(direct[kind])} | {entry['keys']:,} |")
    return [*out, ""]


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    listing = result.get("listing") or {}
    filesystem = listing.get("filesystem") or {}
    checks: list[tuple[str, str, bool | None]] = []
    for dataset in filesystem.values():
        for case in CASES:
            row = dataset["cases"].get(case) or {}
            ours, theirs = row.get("vmregistry"), row.get("distribution")
            if ours and theirs:
                checks.append(
                    (
                        f"{_label(case, dataset)} <= distribution",
                        f"{ours['ms']:,.1f} vs {theirs['ms']:,.1f} ms",
                        ours["ms"] <= theirs["ms"],
                    )
                )
    growth = [
        (d["repositories"], d["memory"]["vmregistry"]["growth_mib"])
        for d in filesystem.values()
        if "vmregistry" in (d.get("memory") or {})
    ]
    if len(growth) > 1:
        (small, low), (large, high) = min(growth), max(growth)
        checks.append(
            (
                "memory of a deep catalog page does not grow with the registry",
                f"RSS {low:+} MiB at {small:,}, {high:+} MiB at {large:,} repositories",
                high <= low + RSS_SLACK_MIB,
            )
        )
    return checks
