"""Where the client's credentials come from, and where ``vmregistry login`` keeps them.

In order, the first that has something for the registry wins:

1. the ``token`` argument (``--token``): a bearer token, sent as it is;
2. the ``VMREGISTRY_TOKEN`` environment variable: the same;
3. ``VMREGISTRY_USERNAME`` and ``VMREGISTRY_PASSWORD``: a login from the
   environment (CI jobs), turned into tokens like any other; with
   ``VMREGISTRY_LOGIN_HOST`` set, only for that ``host[:port]``;
4. the credentials file, ``$VMREGISTRY_CREDENTIALS`` or
   ``$XDG_CONFIG_HOME/vmregistry/credentials.json``
   (``~/.config/vmregistry/credentials.json``)::

       {
         "registries": {
           "localhost:8080": {"token": "eyJ..."},
           "registry.example.com": {"username": "alice", "refreshToken": "..."},
           "other.example.com": {"credentialHelper": "pass"}
         }
       }

   ``token`` is a static bearer token; ``username`` with ``refreshToken``
   (or ``password``, when the Auth Server gives no refresh tokens) is what
   ``vmregistry login`` writes; ``credentialHelper`` names a
   ``docker-credential-<name>`` program that holds the login instead;
5. docker's configuration (:mod:`._dockerconfig`), so one ``docker login``
   serves every tool.

An entry is found by the registry exactly as the user wrote it, then by its
base URL, then by ``host[:port]``. A login becomes tokens through
:class:`._tokens.TokenSource`. Tokens only ever go to the registry's own
origin and passwords only to its Auth Server: never to presigned storage
URLs (see :mod:`._transport`).

The file is written with mode 0600; one that others may read is used, with
a warning, as ssh warns about an unprotected key.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from vmregistry.client._dockerconfig import docker_login, helper_erase, helper_get, helper_store
from vmregistry.client._errors import UsageError
from vmregistry.client._reference import RegistryHost
from vmregistry.client._state import atomic_write_json
from vmregistry.client._tokens import Login, TokenSource

__all__ = ["TOKEN_ENV", "credentials_path", "forget_login", "resolve_credentials", "resolve_token", "save_login"]

TOKEN_ENV = "VMREGISTRY_TOKEN"
USERNAME_ENV, PASSWORD_ENV, LOGIN_HOST_ENV = "VMREGISTRY_USERNAME", "VMREGISTRY_PASSWORD", "VMREGISTRY_LOGIN_HOST"
log = logging.getLogger("vmregistry.client")
_warned: set[Path] = set()


def credentials_path() -> Path:
    explicit = os.environ.get("VMREGISTRY_CREDENTIALS")
    if explicit:
        return Path(explicit)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "vmregistry" / "credentials.json"


def _check_mode(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077 and path not in _warned:
        _warned.add(path)
        log.warning(
            "WARNING: the credentials file %s is readable by others (mode %04o): anyone on this machine can use"
            " the tokens in it. Protect it with: chmod 600 %s",
            path,
            mode,
            path,
        )


def _read() -> tuple[Path, dict[str, Any]]:
    path = credentials_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return path, {"registries": {}}
    except OSError as exc:
        raise UsageError(f"cannot read the credentials file {path}: {exc}") from None
    _check_mode(path)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the credentials file {path}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("registries", {}), dict):
        raise UsageError(f'{path}: expected {{"registries": {{"<registry>": {{"token": "..."}}}}}}')
    document.setdefault("registries", {})
    return path, document


def _write(path: Path, document: dict[str, Any]) -> None:
    atomic_write_json(path, document, private=True, indent=2)


def _entry(registry: RegistryHost, entries: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    for key in (registry.key, registry.base_url, registry.host):
        entry = entries.get(key)
        if isinstance(entry, dict):
            return key, entry
    return None


def _from_entry(registry: RegistryHost, path: Path, entry: dict[str, Any]) -> str | Login | None:
    if isinstance(entry.get("token"), str):
        return str(entry["token"]).strip()
    source = f"{path}"
    username = str(entry.get("username") or "")
    if isinstance(entry.get("refreshToken"), str):
        return Login(username, refresh_token=entry["refreshToken"], source=source)
    if isinstance(entry.get("password"), str):
        return Login(username, password=entry["password"], source=source)
    if isinstance(entry.get("credentialHelper"), str):
        return helper_get(entry["credentialHelper"], registry.host)
    return None


def resolve_credentials(registry: RegistryHost, token: str | None = None) -> TokenSource:
    """The token source for ``registry``: a static token, a login, or nothing (anonymous)."""
    if token:
        return TokenSource(static=token.strip())
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return TokenSource(static=from_env)
    username, password = os.environ.get(USERNAME_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    for_host = os.environ.get(LOGIN_HOST_ENV, "").strip().lower()
    if username and password and for_host in ("", registry.host.lower()):
        return TokenSource(login=Login(username, password=password, source=f"{USERNAME_ENV}/{PASSWORD_ENV}"))
    path, document = _read()
    found = _entry(registry, document["registries"])
    credential = _from_entry(registry, path, found[1]) if found else None
    if credential is None:
        credential = docker_login(registry.host)
    if isinstance(credential, str):
        return TokenSource(static=credential)
    return TokenSource(login=credential)


def resolve_token(registry: RegistryHost, token: str | None = None) -> str | None:
    """The static bearer token for ``registry``, or ``None`` (a login is not a token)."""
    return resolve_credentials(registry, token).static


def save_login(registry: RegistryHost, login: Login, helper: str | None = None) -> Path | str:
    """Keep ``login`` for ``registry``: in the credentials file (0600), or in ``helper``. Returns where."""
    path, document = _read()
    if helper:
        helper_store(helper, registry.host, login)
        entry: dict[str, Any] = {"credentialHelper": helper}
    elif login.refresh_token:
        entry = {"username": login.username, "refreshToken": login.refresh_token}
    else:
        entry = {"username": login.username, "password": login.password or ""}
    registries = document["registries"]
    for key in (registry.key, registry.base_url, registry.host):
        registries.pop(key, None)
    registries[registry.key] = entry
    _write(path, document)
    return f"docker-credential-{helper}" if helper else path


def forget_login(registry: RegistryHost) -> bool:
    """Remove what ``vmregistry login`` stored for ``registry``; False if there was nothing."""
    path, document = _read()
    found = _entry(registry, document["registries"])
    if found is None:
        return False
    key, entry = found
    if isinstance(entry.get("credentialHelper"), str):
        helper_erase(entry["credentialHelper"], registry.host)
    del document["registries"][key]
    _write(path, document)
    return True
