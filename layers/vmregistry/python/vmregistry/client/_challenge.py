"""The ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` challenge a registry answers 401 with.

One parser for the client: :mod:`._tokens` follows the challenge to the token
endpoint, :mod:`._errors` quotes its scope when a refusal is final.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Challenge", "parse_challenge"]

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        return self.params.get("scope", "").split()


def parse_challenge(header: str | None) -> Challenge | None:
    """The Bearer challenge of a ``WWW-Authenticate`` value, or ``None`` if there is none."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        found = _PARAM.match(rest, position)
        if found is None or found.end() == position:
            break
        quoted, bare = found.group(2), found.group(3)
        params[found.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        position = found.end()
    return Challenge("bearer", params)
