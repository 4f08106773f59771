"""Logins shared with docker, skopeo and podman: ``~/.docker/config.json`` and ``docker-credential-*`` helpers.

The file is ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``)::

    {
      "auths": {"localhost:8080": {"auth": "<base64 user:password>"},
                "registry.example.com": {"identitytoken": "<refresh token>"}},
      "credsStore": "pass",
      "credHelpers": {"registry.example.com": "secretservice"}
    }

As docker does, a registry's helper is ``credHelpers[host]``, else
``credsStore``; the helper is the program ``docker-credential-<name>`` on
``PATH``, spoken to on stdin/stdout: ``get`` reads the server name and
answers ``{"ServerURL", "Username", "Secret"}`` (a ``Username`` of
``<token>`` means ``Secret`` is a refresh token), ``store`` reads that JSON,
``erase`` reads the server name. Without a helper, ``auths`` is read.
Entries are found by ``host[:port]``, also when written as a URL
(``https://host/v1/``, as docker writes some).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vmregistry.client._errors import ClientError, UsageError
from vmregistry.client._tokens import Login

__all__ = ["IDENTITY_TOKEN_USER", "docker_config_path", "docker_login", "helper_erase", "helper_get", "helper_store"]

IDENTITY_TOKEN_USER = "<token>"
HELPER_TIMEOUT = 60


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _host_of(key: str) -> str:
    return (urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]).lower()


def _entry(table: Any, host: str) -> Any:
    if not isinstance(table, dict):
        return None
    if host in table:
        return table[host]
    for key, value in table.items():
        if isinstance(key, str) and _host_of(key) == host:
            return value
    return None


def _program(helper: str) -> str:
    program = f"docker-credential-{helper}"
    found = shutil.which(program)
    if found is None:
        raise UsageError(f"the credential helper {program} is not on PATH (named in {docker_config_path()})")
    return found


def _run(helper: str, action: str, data: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [_program(helper), action], input=data, capture_output=True, text=True, timeout=HELPER_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClientError(f"the credential helper docker-credential-{helper} failed: {exc}") from None


def helper_get(helper: str, server: str) -> Login | None:
    """What ``docker-credential-<helper> get`` holds for ``server``, or ``None`` if it holds nothing."""
    done = _run(helper, "get", server)
    if done.returncode != 0:
        if "not found" in (done.stdout + done.stderr).lower():
            return None
        message = (done.stderr or done.stdout).strip()[:300]
        raise ClientError(f"docker-credential-{helper} get {server} failed: {message}")
    try:
        answer = json.loads(done.stdout)
        username, secret = str(answer.get("Username") or ""), str(answer["Secret"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ClientError(f"docker-credential-{helper} get {server} did not answer JSON with a Secret") from None
    source = f"credential helper docker-credential-{helper}"
    if username == IDENTITY_TOKEN_USER:
        return Login("", refresh_token=secret, source=source)
    return Login(username, password=secret, source=source)


def helper_store(helper: str, server: str, login: Login) -> None:
    secret = login.refresh_token or login.password or ""
    username = IDENTITY_TOKEN_USER if login.refresh_token else login.username
    done = _run(helper, "store", json.dumps({"ServerURL": server, "Username": username, "Secret": secret}))
    if done.returncode != 0:
        raise ClientError(f"docker-credential-{helper} store failed: {(done.stderr or done.stdout).strip()[:300]}")


def helper_erase(helper: str, server: str) -> None:
    done = _run(helper, "erase", server)
    if done.returncode != 0 and "not found" not in (done.stdout + done.stderr).lower():
        raise ClientError(f"docker-credential-{helper} erase failed: {(done.stderr or done.stdout).strip()[:300]}")


def docker_login(host: str) -> Login | None:
    """The login docker's configuration holds for ``host`` (``host[:port]``), or ``None``."""
    path = docker_config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read docker's configuration {path}: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: not a JSON object")
    host = host.lower()
    helper = _entry(config.get("credHelpers"), host) or config.get("credsStore")
    if isinstance(helper, str) and helper:
        found = helper_get(helper, host)
        if found is not None:
            return found
    entry = _entry(config.get("auths"), host)
    if not isinstance(entry, dict):
        return None
    source = f"{path}"
    if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
        return Login(str(entry.get("username") or ""), refresh_token=entry["identitytoken"], source=source)
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            username, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"{path}: the 'auth' of {host} is not base64 of user:password") from None
        return Login(username, password=password, source=source)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Login(entry["username"], password=entry["password"], source=source)
    return None
