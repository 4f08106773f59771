"""A deliberately plain HTTP client for tests: no redirects followed, no headers added.

Tests must see exactly what the server answered (a 307 is a 307): this is
:func:`emulator.fetch.fetch`, the one plain request of every harness, with a
:class:`Reply` that reads headers, JSON and the registry's error codes.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from emulator.fetch import fetch

__all__ = ["Reply", "request"]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_codes(self) -> list[str]:
        return [e["code"] for e in self.json()["errors"]]


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Reply:
    return Reply(*fetch(None, method, url, body, headers, timeout))
