"""``vmregistry login`` and ``logout``: trade a password for what lets the client get tokens later.

``login`` asks the registry where its Auth Server is (``GET /v1/`` answers
401 with a Bearer challenge naming the ``realm``), asks that realm for a
token with the username and password (OAuth2 ``grant_type=password`` with
``access_type=offline``, or Docker's GET with ``offline_token=true``), checks
the token with the registry, and stores the refresh token the Auth Server
returned (or, if it returns none, the password) with
:func:`._auth.save_login`. Later commands turn that into short-lived
tokens with exactly the scopes they need (:mod:`._tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmregistry.client._auth import forget_login, save_login
from vmregistry.client._errors import ClientError
from vmregistry.client._reference import RegistryHost
from vmregistry.client._tokens import Login, TokenSource, parse_challenge, request_token
from vmregistry.client._transport import Transport

__all__ = ["LoginResult", "login", "logout"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    stored: Path | str | None
    """Where the login was kept; ``None`` when the registry asks for no credentials."""
    refresh_token: bool
    """True if the Auth Server gave a refresh token (and no password was stored)."""


def login(
    registry: RegistryHost,
    username: str,
    password: str,
    *,
    helper: str | None = None,
    ca_bundle: str | None = None,
) -> LoginResult:
    transport = Transport(registry, TokenSource(), ca_bundle=ca_bundle)
    try:
        probe = registry.url("/v1/")
        status, headers, _ = transport.exchange("GET", probe, {}, None)
        if status == 200:
            return LoginResult(None, False)
        challenge = parse_challenge(headers.get("www-authenticate"))
        if status != 401 or challenge is None:
            raise ClientError(
                f"{probe} answered {status} without a Bearer challenge: is {registry.base_url} a vmregistry?"
            )
        if "://" not in challenge.realm:
            raise ClientError(
                f"the registry at {registry.base_url} names no token endpoint (realm={challenge.realm!r}), so there"
                " is nowhere to log in.\n  what to do: get a token from your Auth Server and pass it with --token,"
                " VMREGISTRY_TOKEN or the credentials file"
            )
        reply = request_token(transport.exchange, challenge, Login(username, password=password), [], offline=True)
        status, _, _ = transport.exchange("GET", probe, {"Authorization": f"Bearer {reply.token}"}, None)
        if status != 200:
            raise ClientError(f"the registry refused the token its Auth Server issued ({status} from {probe})")
    finally:
        transport.close()
    keep = (
        Login(username, refresh_token=reply.refresh_token)
        if reply.refresh_token
        else Login(username, password=password)
    )
    return LoginResult(save_login(registry, keep, helper), reply.refresh_token is not None)


def logout(registry: RegistryHost) -> bool:
    """Forget the login for ``registry``; False if there was none."""
    return forget_login(registry)
