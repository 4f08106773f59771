"""What a killed server left is swept: at the next start, hourly, and by ``vmregistry sweep-uploads`` (issue 12).

A request killed mid-body leaves its temporary file (the filesystem backend
writes every object to ``.tmp`` first); a session that was never saved leaves
its ``.multipart`` directory; a request killed after staging its body leaves
``uploads/<id>/body``. Each is removed once it has not changed for longer
than a live request could leave it untouched, and the sweep says what it
removed. What is younger stays: it may belong to a request in progress.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import VMREGISTRY, start_server, stop_server
from tests.rawhttp import Exchange

MiB = 1024 * 1024
HOURS_AGO = time.time() - 2 * 3600


def _age(path: Path) -> None:
    os.utime(path, (HOURS_AGO, HOURS_AGO))


def test_a_restart_sweeps_what_a_killed_server_left(tmp_path: Path) -> None:
    # GIVEN a server killed (-9) while a 64 MiB blob PUT was half sent
    server = start_server(tmp_path, "-workers", "1")
    digest = "sha256:" + "1" * 64
    with Exchange(server.url) as exchange:
        exchange.send_head("PUT", f"/v1/crash/vm/blobs/{digest}", [("Content-Length", str(64 * MiB))])
        exchange.send(b"\0" * (32 * MiB))
        deadline = time.monotonic() + 10
        tmp = server.storage / ".tmp"
        while not any(p.stat().st_size for p in tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    left = list(tmp.iterdir())
    assert len(left) == 1, "the half-received body is a temporary file"
    size = left[0].stat().st_size
    # AND a fresh temporary file (a request of another server still writing), and time has passed for the first
    _age(left[0])
    fresh = tmp / "0123456789abcdef0123456789abcdef"
    fresh.write_bytes(b"in progress")
    # WHEN the server starts again
    restarted = start_server(tmp_path, "-workers", "1", storage=server.storage)
    try:
        deadline = time.monotonic() + 10
        while (left[0].exists() or '"swept"' not in restarted.logs()) and time.monotonic() < deadline:
            time.sleep(0.05)
        # THEN the old one is gone, the fresh one stays, and the sweep said what it freed
        assert not left[0].exists()
        assert fresh.exists()
        sweeps = [json.loads(line) for line in restarted.logs().splitlines() if '"swept"' in line]
        assert [entry["swept"]["temporary_files"] for entry in sweeps] == [1]
        assert sweeps[0]["swept"]["temporary_bytes"] == size
    finally:
        stop_server(restarted)


def test_sweep_uploads_reports_every_kind_of_leftover(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    for directory in (".tmp", ".multipart", "uploads"):
        (storage / directory).mkdir(parents=True)
    # GIVEN an old temporary file, a multipart directory whose session was never saved, and a staged body
    # whose request died, all untouched for two hours
    temporary = storage / ".tmp" / ("a" * 32)
    temporary.write_bytes(b"x" * 1000)
    multipart = storage / ".multipart" / ("b" * 32)
    multipart.mkdir()
    (multipart / "key").write_text("uploads/5f0c0000-0000-4000-8000-000000000000/data")
    (multipart / "00001").write_bytes(b"part")
    staged = storage / "uploads" / "6a1d0000-0000-4000-8000-000000000000" / "body"
    staged.parent.mkdir()
    staged.write_bytes(b"body")
    for path in (temporary, multipart / "key", multipart / "00001", multipart, staged):
        _age(path)
    # WHEN uploads are swept with the default age (24 hours, for sessions and leftovers alike), THEN nothing
    # goes (they may still be wanted); WHEN with one hour
    kept = subprocess.run(
        [VMREGISTRY, "sweep-uploads", "-fs-path", str(storage)], capture_output=True, text=True, check=True
    )
    assert "0 upload session(s), 0 orphaned" in kept.stdout
    assert temporary.exists()
    swept = subprocess.run(
        [VMREGISTRY, "sweep-uploads", "-older-than", "1", "-fs-path", str(storage)],
        capture_output=True,
        text=True,
        check=True,
    )
    # THEN the first kept them (they may still be wanted), the second removed each and said so
    assert (
        "0 upload session(s), 1 orphaned upload object(s), 1 abandoned multipart upload(s),"
        " 1 temporary file(s) (1000 bytes)" in swept.stdout
    )
    assert not temporary.exists()
    assert not multipart.exists()
    assert not staged.exists()


def test_an_abandoned_upload_written_in_place_is_swept_whole(tmp_path: Path) -> None:
    from vmregistry.registry import Registry
    from vmregistry.registry.body import Body
    from vmregistry.storage.filesystem import FilesystemStorage

    # GIVEN an upload written in place (its data file, part records and declared zeros), whose session is gone
    storage = tmp_path / "storage"
    registry = Registry(FilesystemStorage(storage))
    status = registry.uploads.start("crash/vm", size=16 * MiB, mode="multipart", part_size=8 * MiB)
    uuid = status.session.uuid  # type: ignore[union-attr]
    registry.uploads.put_parts("crash/vm", uuid, "1", Body(os.urandom(8 * MiB)))
    registry.uploads.put_parts("crash/vm", uuid, None, zero=f"2:{8 * MiB}:{8 * MiB}")
    (storage / "uploads" / uuid / "session.json").unlink()
    for path in [*storage.joinpath(".multipart").rglob("*"), *storage.joinpath("uploads").rglob("*")]:
        _age(path)
    # WHEN uploads are swept with an hour's age
    swept = subprocess.run(
        [VMREGISTRY, "sweep-uploads", "-older-than", "1", "-fs-path", str(storage)],
        capture_output=True,
        text=True,
        check=True,
    )
    # THEN the multipart upload (data file and records) and the keys under uploads/ are gone
    assert "1 orphaned upload object(s), 1 abandoned multipart upload(s)" in swept.stdout
    assert list((storage / ".multipart").iterdir()) == []
    assert not (storage / "uploads" / uuid).exists()
