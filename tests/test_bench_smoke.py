"""The benchmark harness still runs: ``python -m bench --quick`` against our own server.

GIVEN the harness with tiny sizes (1 MiB blobs, 32 MiB disks, one run) and
vmregistry alone (distribution, skopeo and wrk are installed by ``make bench``
only), WHEN it runs the throughput, Lambda-cost, memory, listing, manifest-PUT
and disk sections, THEN it writes JSON and Markdown with a figure for each
(every pull of the throughput section, every page, every layer count, every
disk tool), and every pulled blob hashed to its digest (the
harness raises otherwise). The figures themselves are not checked: a shared
test machine makes them meaningless here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the work tree, as ``make bench`` runs it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_quick_bench_writes_results(tmp_path: Path) -> None:
    # GIVEN / WHEN
    done = run_module(
        "bench",
        "--quick",
        "--no-distribution",
        "--skip",
        "control",
        "s3",
        "emulator",
        "--out",
        str(tmp_path),
        "--workdir",
        str(tmp_path),
    )

    # THEN
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["throughput"]["1"]["push"]["vmregistry"]["median"] > 0
    assert result["throughput"]["1"]["pull"]["vmregistry"]["median"] > 0
    assert result["disks"]["sparse"]["seconds"]["vmregistry"]["pull"]["median"] > 0
    assert result["limits"]["sha256"]["median"] > 0
    assert result["lambda"]["import"]["blob_head"]["ms"] > 0
    assert all("p50_ms" in entry for entry in result["lambda"]["invoke"].values())
    assert all(200 <= entry["status"] < 300 or entry["status"] == 307 for entry in result["lambda"]["invoke"].values())
    assert result["memory"]["vmregistry"]["4"]["peak_mib"] > 0
    assert all(
        p > 0
        for p in (result["throughput"]["1"][kind]["vmregistry"]["median"] for kind in ("pull_settled", "pull_cold"))
    )
    pages = result["listing"]["filesystem"]["quick"]
    assert all(pages["cases"][case]["vmregistry"]["ms"] > 0 for case in pages["cases"])
    assert all(check["expected"] for check in pages["checks"]["vmregistry"].values())
    assert all(case["ms"] > 0 for case in result["manifest_put"]["filesystem"]["cases"].values())
    table = (tmp_path / "latest.md").read_text()
    assert "## Blob throughput" in table
    assert "## Lambda costs" in table
    assert "## Listing" in table
    assert "## Manifest PUT" in table


def test_the_transport_comparison_runs(tmp_path: Path) -> None:
    # GIVEN / WHEN the library comparison of bench/transports.py runs on a tiny blob, once
    out = tmp_path / "transports.json"
    done = run_module("bench.transports", "--size", "8M", "--runs", "1", "--workers", "1", "--out", str(out))

    # THEN every library and the whole client moved the blob both ways (each checks the byte count)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"http.client", "urllib3", "vmregistry.client"} <= set(result["push"])
    assert all(entry["median"] > 0 for entry in [*result["push"].values(), *result["pull"].values()])
