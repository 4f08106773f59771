"""Progress for people: a bar per blob on a terminal, plain lines in logs, nothing with ``--quiet``.

Small enough to write by hand: a multi-line redraw with two ANSI sequences
(cursor up, clear line), throttled to ten frames a second, shared by the
worker threads under one lock. When the output is not a terminal (CI logs,
pipes), each blob gets a start line, a line at every quarter of large blobs,
and an end line with the size, time and rate, so logs stay greppable and do
not fill with carriage returns.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Literal, TextIO

from vmregistry.client._errors import is_resumable

__all__ = ["Progress", "Task", "format_bytes", "interruption"]

Mode = Literal["auto", "bars", "lines", "quiet"]
_FRAME = 0.1
_BAR = 24


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else (f"{seconds // 60}:{seconds % 60:02d}")
    )


def interruption(exc: BaseException, what: str) -> str:
    """How a transfer that stopped on ``exc`` ends: interrupted (resumable) or failed."""
    return f"interrupted (run the {what} again to resume)" if is_resumable(exc) else "failed"


class Task:
    """One blob's transfer. ``advance`` may be called from any thread, also with negative counts (retries)."""

    def __init__(self, progress: Progress, label: str, total: int) -> None:
        self.progress = progress
        self.label = label
        self.total = total
        self.done_bytes = 0
        self.skipped = 0
        """Bytes a resumed transfer found already there: done, but not moved in this run."""
        self.started = time.monotonic()
        self.finished: str | None = None
        self._quarter = 0

    def advance(self, n: int) -> None:
        self.progress._advance(self, n)

    def skip(self, n: int) -> None:
        """Count ``n`` bytes found already transferred (a resume): progress, but not speed."""
        self.skipped += n
        self.progress._advance(self, n)

    def finish(self, outcome: str = "done") -> None:
        self.progress._finish(self, outcome)

    @property
    def sent(self) -> int:
        """Bytes moved in this run."""
        return self.done_bytes - self.skipped

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0

    def line(self, width: int) -> str:
        total = max(self.total, 1)
        fraction = min(1.0, self.done_bytes / total)
        rate = self.rate()
        if self.finished is not None and self.done_bytes < self.total:
            tail = f"{self.finished} after {format_bytes(self.done_bytes)} of {format_bytes(self.total)}"
        elif self.finished is not None:
            tail = f"{self.finished} {format_bytes(self.total)} in {_duration(time.monotonic() - self.started)}"
        else:
            eta = _duration((self.total - self.done_bytes) / rate) if rate > 0 else "--:--"
            tail = (
                f"{fraction * 100:3.0f}% {format_bytes(self.done_bytes)}/{format_bytes(self.total)}"
                f" {format_bytes(rate)}/s ETA {eta}"
            )
        filled = int(fraction * _BAR)
        bar = "#" * filled + "-" * (_BAR - filled)
        label = self.label[: max(10, width - len(tail) - _BAR - 5)]
        return f"{label} [{bar}] {tail}"[:width]


class Progress:
    def __init__(self, stream: TextIO | None = None, mode: Mode = "auto") -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bars" if self.stream.isatty() else "lines"
        self.mode = mode
        self._lock = threading.Lock()
        self._tasks: list[Task] = []
        self._drawn = 0
        self._last_frame = 0.0

    def task(self, label: str, total: int) -> Task:
        task = Task(self, label, total)
        with self._lock:
            if self.mode == "bars":
                self._tasks.append(task)
                self._draw(force=True)
            elif self.mode == "lines":
                self._print(f"{label}: starting ({format_bytes(total)})")
        return task

    def note(self, message: str) -> None:
        """A message that must not be drawn over (a retry, a skipped blob)."""
        if self.mode == "quiet":
            return
        with self._lock:
            self._clear()
            self._print(message)
            self._draw(force=True)

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _advance(self, task: Task, n: int) -> None:
        with self._lock:
            task.done_bytes += n
            if self.mode == "bars":
                self._draw()
            elif self.mode == "lines" and task.total >= 64 * 1024 * 1024:
                quarter = int(4 * task.done_bytes / task.total)
                if 0 < quarter < 4 and quarter > task._quarter:
                    task._quarter = quarter
                    self._print(
                        f"{task.label}: {quarter * 25}% {format_bytes(task.done_bytes)}"
                        f" at {format_bytes(task.rate())}/s"
                    )

    def _finish(self, task: Task, outcome: str) -> None:
        with self._lock:
            if task.finished is not None:
                return
            task.finished = outcome
            if self.mode == "bars":
                # A finished bar is printed once above the live ones and stays there.
                self._clear()
                self._print(task.line(self._width()))
                self._tasks.remove(task)
                self._draw(force=True)
            elif self.mode == "lines":
                elapsed = time.monotonic() - task.started
                if task.done_bytes >= task.total:
                    rate = f"{format_bytes(task.sent / elapsed)}/s" if elapsed > 0 else ""
                    if task.skipped:
                        rate = f"{format_bytes(task.sent)} of it sent in this run, {rate}"
                    self._print(f"{task.label}: {outcome} {format_bytes(task.total)} in {elapsed:.1f}s ({rate})")
                else:
                    self._print(
                        f"{task.label}: {outcome} after {format_bytes(task.done_bytes)} of {format_bytes(task.total)}"
                    )

    def _clear(self) -> None:
        if self.mode == "bars" and self._drawn:
            self.stream.write(f"\033[{self._drawn}F\033[J")
            self._drawn = 0

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_frame < _FRAME:
            return
        self._last_frame = now
        width = self._width()
        self._clear()
        lines = [task.line(width) for task in self._tasks]
        if lines:
            self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    @staticmethod
    def _width() -> int:
        return max(40, shutil.get_terminal_size((100, 24)).columns - 1)
