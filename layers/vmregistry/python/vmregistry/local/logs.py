"""The local server's logs: one line per request, readable and coloured on a terminal, JSON lines otherwise."""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["AccessLogWriter", "access_log", "configure_logging"]

access_log = logging.getLogger("vmregistry.local.access")

_RESET = "\033[0m"
_DIM = "\033[2m"
_STATUS_COLOURS = {2: "\033[32m", 3: "\033[36m", 4: "\033[33m", 5: "\033[31m"}
_LEVEL_COLOURS = {"WARNING": "\033[33m", "ERROR": "\033[31m", "CRITICAL": "\033[31m"}
_FIELDS = ("method", "path", "status", "duration_ms", "bytes", "request_id", "client", "swept")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker process wrote it (vmregistry serve -workers)
        }
        entry.update({k: getattr(record, k) for k in _FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class TerminalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = record.__dict__  # access-log fields arrive through ``extra=``
        if "status" in fields:
            status = int(fields["status"])
            colour = _STATUS_COLOURS.get(status // 100, "")
            return (
                f"{_DIM}{stamp}{_RESET} {colour}{status}{_RESET} {fields['method']:<6} {fields['path']}"
                f" {_DIM}{fields['duration_ms']:.1f} ms {fields['bytes']} B pid {record.process}{_RESET}"
            )
        colour = _LEVEL_COLOURS.get(record.levelname, "")
        line = f"{_DIM}{stamp}{_RESET} {colour}{record.levelname.lower()}{_RESET} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    stream: TextIO | None = None, *, json_lines: bool | None = None, level: int = logging.INFO
) -> None:
    """Send vmregistry's logs to ``stream`` (stderr), in the format that suits it."""
    stream = stream or sys.stderr
    use_json = (not stream.isatty()) if json_lines is None else json_lines
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if use_json else TerminalFormatter())
    # Powertools owns the "vmregistry" logger (its service name): keep ours beside it, not below it.
    root = logging.getLogger("vmregistry.local")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class AccessLogWriter:
    """Request log lines, written by one thread: request threads only enqueue their fields.

    Why not log from the request thread: the handler formats, writes and flushes
    under its lock, and with many keep-alive connections the request threads
    queued on that lock (about a third of the GIL's time under ``wrk -c16`` on
    HEAD blob). Lines keep their order; one still queued when the process is
    killed is lost, as it would be in a buffered log file.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def __call__(self, fields: dict[str, Any]) -> None:
        self._queue.put(fields)

    def _run(self) -> None:
        while (fields := self._queue.get()) is not None:
            access_log.info("request", extra=fields)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
