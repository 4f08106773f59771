"""Access logs: coloured lines for people at a terminal, JSON lines for collectors."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import pytest
from vmregistry.local.logs import access_log, configure_logging

FIELDS = {"method": "PUT", "path": "/v1/a/blobs/x", "status": 201, "duration_ms": 1.5, "bytes": 42, "client": "::1"}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    yield buffer
    configure_logging(io.StringIO(), json_lines=True)  # detach from the buffer


def test_terminal_lines_are_coloured_and_readable(stream: io.StringIO) -> None:
    configure_logging(stream, json_lines=False)
    access_log.info("request", extra=FIELDS)
    line = stream.getvalue()
    assert "\033[32m201\033[0m" in line  # 2xx in green
    assert "PUT" in line
    assert "/v1/a/blobs/x" in line
    assert "1.5 ms" in line
    assert f"pid {os.getpid()}" in line


def test_non_terminal_lines_are_json(stream: io.StringIO) -> None:
    configure_logging(stream, json_lines=True)
    access_log.warning("request", extra=FIELDS | {"status": 503})
    entry = json.loads(stream.getvalue())
    assert entry["status"] == 503
    assert entry["level"] == "WARNING"
    assert entry["pid"] == os.getpid()  # which worker of `serve -workers N` wrote it
    assert {k: entry[k] for k in FIELDS if k != "status"} == {k: v for k, v in FIELDS.items() if k != "status"}


def test_the_format_follows_the_stream(stream: io.StringIO) -> None:
    configure_logging(stream)  # a StringIO is not a terminal
    access_log.info("request", extra=FIELDS)
    assert json.loads(stream.getvalue())["method"] == "PUT"
