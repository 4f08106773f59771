"""Bearer tokens from the Auth Server the registry names, fetched for exactly the scopes needed and renewed.

The registry answers a request without a good token with a challenge::

    WWW-Authenticate: Bearer realm="https://auth.example.com/token",service="vmregistry",
                      scope="repository:team/app:pull"

A :class:`TokenSource` holding a :class:`Login` (username and password, or
a refresh token) answers it as docker and containerd do:

- **OAuth2** (``POST realm``, form-encoded): ``grant_type=refresh_token`` when
  it has a refresh token, else ``grant_type=password``; ``service``, ``scope``
  (space-separated) and ``client_id`` go along. A realm that does not speak
  it (404, 405) is asked the other way;
- **Docker's token protocol** (``GET realm?service=&scope=&scope=``, HTTP
  Basic with the username and password).

Scopes: an operation declares what it will need (:meth:`TokenSource.want`,
e.g. ``repository:team/app:pull,push`` for a push) and the challenge adds
what a request asked for; the token is fetched for their union, merged per
repository, and nothing more. Tokens are renewed before they expire
(``expires_in``, 60 s when absent, as the protocol says) and again when the
registry still answers 401, so a push that outlives its token carries on.

A static token (``--token``, ``VMREGISTRY_TOKEN``, the credentials file)
is sent as it is and never renewed.

Passwords go only to the realm, and only over https (or to loopback): a
realm on plain http elsewhere is refused.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from vmregistry.client._challenge import Challenge, parse_challenge
from vmregistry.client._errors import ClientError, UsageError
from vmregistry.client._reference import is_loopback

__all__ = [
    "CLIENT_ID",
    "Challenge",
    "Login",
    "TokenReply",
    "TokenSource",
    "merge_scopes",
    "parse_challenge",
]

CLIENT_ID = "vmregistry-client"
DEFAULT_EXPIRES_IN = 60
# Renew this long before expiry (at most a quarter of the lifetime, for short-lived tokens).
RENEW_MARGIN = 30.0

Fetch = Callable[[str, str, Mapping[str, str], bytes | None], tuple[int, dict[str, str], bytes]]
"""(method, url, headers, body) -> (status, lower-cased headers, body), with no header policy applied."""


def merge_scopes(scopes: Iterable[str]) -> list[str]:
    """``repository:a:pull`` + ``repository:a:push`` -> ``repository:a:pull,push``; sorted, deduplicated."""
    merged: dict[tuple[str, str], set[str]] = {}
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name:
            continue
        merged.setdefault((kind, name), set()).update(a for a in actions.split(",") if a)
    return [f"{kind}:{name}:{','.join(sorted(actions))}" for (kind, name), actions in sorted(merged.items())]


@dataclass(frozen=True, slots=True)
class Login:
    """What lets the client get tokens: a username with a password or a refresh token."""

    username: str
    password: str | None = None
    refresh_token: str | None = None
    source: str = ""
    """Where it came from, for messages (never the secret itself)."""


@dataclass(frozen=True, slots=True)
class TokenReply:
    token: str
    expires_in: float
    refresh_token: str | None


def _reply(status: int, body: bytes, realm: str) -> TokenReply:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ClientError(f"the Auth Server at {realm} answered {status} without a JSON token")
    token = document.get("access_token") or document.get("token")
    if not isinstance(token, str) or not token:
        raise ClientError(f"the Auth Server at {realm} answered {status} without a token")
    expires = document.get("expires_in")
    expires_in = float(expires) if isinstance(expires, int | float) and expires > 0 else DEFAULT_EXPIRES_IN
    refresh = document.get("refresh_token")
    return TokenReply(token, expires_in, refresh if isinstance(refresh, str) and refresh else None)


def _refused(status: int, body: bytes, realm: str, login: Login) -> ClientError:
    reason = ""
    try:
        document = json.loads(body)
        if isinstance(document, dict):
            reason = str(document.get("error_description") or document.get("error") or "")
            errors = document.get("errors")
            if not reason and isinstance(errors, list) and errors and isinstance(errors[0], dict):
                reason = str(errors[0].get("message", ""))
    except ValueError:
        pass
    what = "refresh token" if login.refresh_token else "username or password"
    return ClientError(
        f"the Auth Server at {realm} refused the {what} of {login.username!r}"
        f"{' (' + login.source + ')' if login.source else ''}: HTTP {status}{': ' + reason if reason else ''}"
        f"\n  what to do: run 'vmregistry login' again"
    )


def request_token(
    fetch: Fetch, challenge: Challenge, login: Login | None, scopes: list[str], *, offline: bool = False
) -> TokenReply:
    """One token from ``challenge.realm`` for ``scopes`` (OAuth2 POST first when there is a login)."""
    realm = challenge.realm
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"the registry's challenge names no usable token endpoint (realm={realm!r})")
    if login is not None and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(f"refusing to send credentials to {realm} over plain http: the realm must be https")
    service = {"service": challenge.service} if challenge.service else {}
    if login is not None:
        form: dict[str, str] = {"client_id": CLIENT_ID, **service}
        if login.refresh_token:
            form |= {"grant_type": "refresh_token", "refresh_token": login.refresh_token}
        else:
            form |= {"grant_type": "password", "username": login.username, "password": login.password or ""}
        if scopes:
            form["scope"] = " ".join(scopes)
        if offline:
            form["access_type"] = "offline"
        status, _, body = fetch(
            "POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(form).encode()
        )
        if 200 <= status < 300:
            return _reply(status, body, realm)
        if status not in (404, 405) or login.refresh_token:
            raise _refused(status, body, realm, login)
    query = [*service.items(), *(("scope", scope) for scope in scopes)]
    if offline:
        query += [("offline_token", "true"), ("client_id", CLIENT_ID)]
    headers: dict[str, str] = {}
    if login is not None:
        pair = f"{login.username}:{login.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    separator = "&" if "?" in realm else "?"
    status, _, body = fetch("GET", realm + (separator + urlencode(query) if query else ""), headers, None)
    if 200 <= status < 300:
        return _reply(status, body, realm)
    if login is None:
        raise ClientError(
            f"the registry needs a login: its Auth Server at {realm} gives no anonymous token (HTTP {status})"
            "\n  what to do: run 'vmregistry login REGISTRY', or pass --token"
        )
    raise _refused(status, body, realm, login)


class TokenSource:
    """The ``Authorization`` value for one registry: a static token, or tokens fetched with a login."""

    def __init__(
        self, static: str | None = None, login: Login | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.static = static
        self.login = login
        self.clock = clock
        self.fetched = 0
        """How many tokens were fetched (tests and diagnostics)."""
        self._wanted: set[str] = set()
        self._challenge: Challenge | None = None
        self._token: str | None = None
        self._scopes: frozenset[str] = frozenset()
        self._renew_at = 0.0
        self._lock = threading.Lock()
        self.fetch: Fetch | None = None
        """Set by the transport: how requests to the realm are sent."""

    @property
    def current(self) -> str | None:
        """The token held now (no renewal): for diagnostics and tests."""
        return self.static if self.static is not None else self._token

    @property
    def renews(self) -> bool:
        """Can this source get a new token when the registry refuses one?"""
        return self.static is None and self.fetch is not None

    def want(self, scopes: Iterable[str]) -> None:
        """Declare scopes an operation will need, so one token covers all of its requests."""
        with self._lock:
            self._wanted.update(scopes)

    def authorization(self) -> str | None:
        """The header value to send now, renewing a token that is about to expire."""
        if self.static is not None:
            return f"Bearer {self.static}"
        with self._lock:
            if self._token is not None and self.clock() >= self._renew_at and self._challenge is not None:
                self._obtain(self._challenge, set(self._scopes))
            return f"Bearer {self._token}" if self._token else None

    def on_challenge(self, header: str | None, sent: str | None) -> bool:
        """A 401 arrived: get a token that answers its challenge. True if the request is worth sending again.

        ``sent`` is the ``Authorization`` the refused request carried: if another
        thread has renewed the token since, that one is tried without fetching again.
        """
        if not self.renews:
            return False
        challenge = parse_challenge(header)
        if challenge is None or not challenge.realm:
            return False
        with self._lock:
            current = f"Bearer {self._token}" if self._token else None
            held = merge_scopes(self._scopes)
            if current is not None and current != sent and merge_scopes([*held, *challenge.scopes]) == held:
                return True
            try:
                self._obtain(challenge, set(self._scopes) | set(challenge.scopes))
            except ClientError:
                if self.login is None:
                    return False  # no anonymous token: the registry's own 401 explains best
                raise
            return True

    def _obtain(self, challenge: Challenge, scopes: set[str]) -> None:
        assert self.fetch is not None
        wanted = merge_scopes(scopes | self._wanted)
        reply = request_token(self.fetch, challenge, self.login, wanted)
        self.fetched += 1
        self._challenge = challenge
        self._token = reply.token
        self._scopes = frozenset(wanted) | frozenset(scopes)
        margin = min(RENEW_MARGIN, reply.expires_in / 4)
        self._renew_at = self.clock() + reply.expires_in - margin
