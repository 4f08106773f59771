"""Where the client's bearer token comes from.

In order: the ``token`` argument (``--token``), the ``VMREGISTRY_TOKEN``
environment variable, then the credentials file. The file is JSON, at
``$VMREGISTRY_CREDENTIALS`` or ``$XDG_CONFIG_HOME/vmregistry/credentials.json``
(``~/.config/vmregistry/credentials.json``)::

    {
      "registries": {
        "localhost:8080": {"token": "eyJ..."},
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod": {"token": "eyJ..."}
      }
    }

An entry is found by the registry exactly as the user wrote it, then by its
base URL, then by ``host[:port]``. The token only ever goes to the registry's
own origin: never to presigned storage URLs (see :mod:`._transport`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vmregistry.client._errors import UsageError
from vmregistry.client._reference import RegistryHost

__all__ = ["credentials_path", "resolve_token"]

TOKEN_ENV = "VMREGISTRY_TOKEN"


def credentials_path() -> Path:
    explicit = os.environ.get("VMREGISTRY_CREDENTIALS")
    if explicit:
        return Path(explicit)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "vmregistry" / "credentials.json"


def _from_file(registry: RegistryHost) -> str | None:
    path = credentials_path()
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the credentials file {path}: {exc}") from None
    entries = document.get("registries") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise UsageError(f'{path}: expected {{"registries": {{"<registry>": {{"token": "..."}}}}}}')
    for key in (registry.key, registry.base_url, registry.host):
        entry = entries.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("token"), str):
            return str(entry["token"])
    return None


def resolve_token(registry: RegistryHost, token: str | None = None) -> str | None:
    """The bearer token for ``registry``, or ``None`` to send requests without one."""
    if token:
        return token.strip()
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env
    return _from_file(registry)
