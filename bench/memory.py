"""Peak memory of a registry process while it moves one blob in and out.

Each size gets a fresh server process, so its ``VmHWM`` (the kernel's
high-water mark of resident memory, ``/proc/<pid>/status``) covers only
start-up plus one push and one pull of that blob. A streaming server shows
the same peak for 64 MiB and 4 GiB; one that buffers grows with the blob.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.client import pull_blob, push_blob
from bench.servers import Server
from bench.throughput import MIB, make_blob

__all__ = ["measure_memory"]


def measure_memory(starters: dict[str, Callable[[Path], Server]], sizes: list[int], work: Path) -> dict[str, Any]:
    """``{server: {size_mib: {"idle_mib", "peak_mib"}}}``."""
    out: dict[str, Any] = {name: {} for name in starters}
    for size in sizes:
        source, digest = make_blob(work, size)
        try:
            for name, start in starters.items():
                home = work / f"memory-{name}-{size}"
                home.mkdir()
                with start(home) as server:
                    idle = server.status_field("VmHWM")
                    push_blob(server, "bench/memory", source, digest, size)
                    pull_blob(server, "bench/memory", digest)
                    peak = server.status_field("VmHWM")
                shutil.rmtree(home, ignore_errors=True)
                out[name][str(size // MIB)] = {"idle_mib": round(idle / MIB, 1), "peak_mib": round(peak / MIB, 1)}
        finally:
            source.unlink(missing_ok=True)
    return out
