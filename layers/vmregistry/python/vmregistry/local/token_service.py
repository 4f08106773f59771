"""A development token endpoint for local mode: Docker's token protocol for users listed in a file.

Off unless ``vmregistry serve -token-users FILE`` turns it on, and meant for
trying logins, token renewal and clients (``vmregistry login``, docker,
skopeo) against a local registry, not for production: in production the
Auth Server issues tokens and the registry only verifies them. It answers
at :data:`TOKEN_PATH`, and the registry's challenges name it as ``realm``.

Two request forms, as distribution's token server and containerd use them:

- ``GET /auth/token?service=S&scope=A&scope=B`` with HTTP Basic credentials;
  ``offline_token=true`` also returns a refresh token. Answer:
  ``{"token", "access_token", "expires_in", "issued_at"[, "refresh_token"]}``.
- ``POST /auth/token``, form-encoded (OAuth2): ``grant_type=password`` with
  ``username`` and ``password``, or ``grant_type=refresh_token`` with
  ``refresh_token``; ``service``, ``scope`` (space-separated), ``client_id``
  and ``access_type=offline`` (a refresh token too). Answer:
  ``{"access_token", "token_type", "expires_in", "scope"[, "refresh_token"]}``;
  failures are OAuth2's ``{"error": "invalid_grant"}`` with 400.

The users file (JSON; ``vmregistry add-user`` writes it)::

    {"users": {"alice": {"password": "scrypt$16384$8$1$<salt>$<hash>",
                         "access": ["repository:team/*:pull,push", "repository:lab/**:*"]}}}

Passwords are kept as scrypt hashes (:func:`hash_password`, stdlib
``hashlib.scrypt``) and compared in constant time. A token grants only what
was asked **and** the user's ``access`` patterns allow, per repository name
(:mod:`vmregistry.auth.patterns`): asking for ``repository:team/app:pull,delete``
with ``team/*:pull,push`` gets ``repository:team/app:pull``; Docker's
``registry:catalog:*`` gets the user's pull patterns (the catalog lists what
a token may pull). Tokens are RS256,
signed with the private key whose public half the registry verifies with
(:func:`vmregistry.auth.mint_token`).

Refresh tokens are not JWTs (the registry must never accept one as an
access token): ``vmr1.<payload>.<HMAC-SHA256>`` with a key derived from the
private key. The payload binds the user and a fingerprint of their password
hash, so removing the user or changing the password revokes them.

:class:`TokenService` is a plain function of (method, path, query, headers,
body) to (status, headers, body); the HTTP server only passes requests in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from vmregistry.auth.scopes import ACTIONS, AccessSet, ScopeError, format_scope, parse_scope_claim
from vmregistry.errors import RegistryError, error_dict
from vmregistry.names import is_valid_name

__all__ = [
    "CATALOG_SCOPE",
    "DEFAULT_LIFETIME",
    "TOKEN_PATH",
    "TokenService",
    "User",
    "check_password",
    "hash_password",
    "load_users",
]

TOKEN_PATH = "/auth/token"
CATALOG_SCOPE = "registry:catalog:*"
DEFAULT_LIFETIME = 300
REFRESH_LIFETIME = 30 * 24 * 3600
MAX_BODY = 64 * 1024
# scrypt at n=2**14, r=8: ~16 MiB and some tens of milliseconds per check (the stdlib's documented default range).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_REFRESH_PREFIX = "vmr1"

Answer = tuple[int, list[tuple[str, str]], bytes]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$<salt>$<hash>``: what the users file keeps instead of the password."""
    salt = salt or secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(derived)}"


def check_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        derived = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(_unb64(expected))
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(derived, _unb64(expected))


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    access: AccessSet

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


def load_users(path: Path) -> dict[str, User]:
    """The users file; raises ValueError (with the file's name) when it does not have the documented shape."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the users file {path}: {exc}") from None
    users = document.get("users") if isinstance(document, dict) else None
    if not isinstance(users, dict):
        raise ValueError(f'{path}: expected {{"users": {{"<name>": {{"password": "scrypt$...", "access": [...]}}}}}}')
    out: dict[str, User] = {}
    for name, entry in users.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
            raise ValueError(f"{path}: user {name!r} needs a 'password' hash")
        try:
            access = AccessSet(tuple(parse_scope_claim(entry.get("access") or [])))
        except ScopeError as exc:
            raise ValueError(f"{path}: user {name!r}: {exc}") from None
        out[str(name)] = User(str(name), entry["password"], access)
    return out


def _granted(user: User, requested: list[str]) -> list[str]:
    """Each requested ``repository:NAME:actions`` cut down to what ``user`` may do on NAME."""
    out: dict[str, set[str]] = {}
    for scope in requested:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if scope == CATALOG_SCOPE:
            # The catalog lists what the token may pull: grant the user's pull patterns themselves.
            for entry in user.access.entries:
                if "pull" in entry.actions:
                    out.setdefault(entry.pattern.text, set()).add("pull")
            continue
        if kind != "repository" or not is_valid_name(name):
            continue  # not a concrete repository: grant nothing for it (the protocol allows a subset)
        allowed = user.access.actions_for(name)
        wanted = {a for a in actions.split(",") if a}
        if "*" in wanted:
            wanted = set(ACTIONS)
        if given := {a for a in wanted if a in allowed}:
            out.setdefault(name, set()).update(given)
    return [format_scope(name, sorted(actions)) for name, actions in sorted(out.items())]


@dataclass(eq=False)
class TokenService:
    """Mints tokens for the users of one file (re-read when it changes)."""

    private_key_pem: bytes = field(repr=False)  # never in a log line
    users_path: Path
    _: KW_ONLY
    service: str
    lifetime: int = DEFAULT_LIFETIME
    issuer: str | None = None
    audience: str | None = None
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        from vmregistry.auth.tokens import load_private_key, mint_token

        self._mint = mint_token
        self._key = load_private_key(self.private_key_pem)  # once: parsing costs ~100x the signing
        self._refresh_key = hashlib.sha256(b"vmregistry refresh token\0" + self.private_key_pem).digest()
        # A broken file stops the server at start, not at the first login.
        self._users: tuple[float, dict[str, User]] = (os.stat(self.users_path).st_mtime, load_users(self.users_path))

    def users(self) -> dict[str, User]:
        mtime = os.stat(self.users_path).st_mtime
        if mtime != self._users[0]:
            self._users = (mtime, load_users(self.users_path))
        return self._users[1]

    # -- refresh tokens ------------------------------------------------------------

    def _refresh_token(self, user: User) -> str:
        payload = json.dumps(
            {
                "sub": user.name,
                "fp": user.fingerprint,
                "exp": int(self.clock()) + REFRESH_LIFETIME,
                "n": _b64(os.urandom(8)),
            },
            separators=(",", ":"),
        ).encode()
        mac = hmac.new(self._refresh_key, payload, hashlib.sha256).digest()
        return f"{_REFRESH_PREFIX}.{_b64(payload)}.{_b64(mac)}"

    def _refreshed_user(self, token: str) -> User | None:
        try:
            prefix, payload_text, mac_text = token.split(".")
            payload = _unb64(payload_text)
            mac = _unb64(mac_text)
        except (ValueError, binascii.Error):
            return None
        expected = hmac.new(self._refresh_key, payload, hashlib.sha256).digest()
        if prefix != _REFRESH_PREFIX or not hmac.compare_digest(mac, expected):
            return None
        claims = json.loads(payload)
        user = self.users().get(str(claims.get("sub")))
        if user is None or claims.get("fp") != user.fingerprint or int(claims.get("exp", 0)) < self.clock():
            return None
        return user

    # -- the endpoint ------------------------------------------------------------------

    def __call__(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Answer:
        if method == "GET":
            return self._get(parse_qs(query), {k.lower(): v for k, v in headers.items()})
        if method == "POST":
            if len(body) > MAX_BODY:
                return _oauth_error(400, "invalid_request", "the form is too large")
            return self._post(parse_qs(body.decode("utf-8", "replace")))
        return _registry_error("UNSUPPORTED", "GET or POST", [("Allow", "GET, POST")])

    def _issue(self, user: User, scopes: list[str]) -> tuple[str, list[str]]:
        granted = _granted(user, scopes)
        token = self._mint(
            self._key,
            subject=user.name,
            scopes=granted,
            lifetime=self.lifetime,
            issuer=self.issuer,
            audience=self.audience,
            now=self.clock(),
        )
        return token, granted

    def _get(self, params: dict[str, list[str]], headers: Mapping[str, str]) -> Answer:
        if params.get("service", [self.service])[0] != self.service:
            return _registry_error("BAD_REQUEST", f"this is service {self.service!r}")
        user = self._basic_user(headers.get("authorization", ""))
        if user is None:
            return _registry_error(
                "UNAUTHORIZED",
                "a username and password are required",
                [("WWW-Authenticate", 'Basic realm="vmregistry token service"')],
            )
        scopes = [s for value in params.get("scope", []) for s in value.split()]
        token, _ = self._issue(user, scopes)
        answer: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.lifetime,
            "issued_at": datetime.fromtimestamp(self.clock(), UTC).isoformat().replace("+00:00", "Z"),
        }
        if params.get("offline_token", ["false"])[0] == "true":
            answer["refresh_token"] = self._refresh_token(user)
        return _json(200, answer)

    def _basic_user(self, authorization: str) -> User | None:
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            name, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self._password_user(name, password)

    def _password_user(self, name: str, password: str) -> User | None:
        user = self.users().get(name)
        if user is None:
            hash_password(password)  # the same work as for a known name: timing does not tell names apart
            return None
        return user if check_password(password, user.password_hash) else None

    def _post(self, form: dict[str, list[str]]) -> Answer:
        def field(name: str) -> str:
            return form.get(name, [""])[0]

        if field("service") and field("service") != self.service:
            return _oauth_error(400, "invalid_request", f"this is service {self.service!r}")
        grant = field("grant_type")
        if grant == "password":
            user = self._password_user(field("username"), field("password"))
        elif grant == "refresh_token":
            user = self._refreshed_user(field("refresh_token"))
        else:
            return _oauth_error(400, "unsupported_grant_type", "grant_type is password or refresh_token")
        if user is None:
            return _oauth_error(400, "invalid_grant", "the credentials or the refresh token are not valid")
        token, granted = self._issue(user, field("scope").split())
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "scope": " ".join(granted),
        }
        if field("access_type") == "offline" or grant == "refresh_token":
            answer["refresh_token"] = self._refresh_token(user)
        return _json(200, answer)


def _json(status: int, document: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> Answer:
    # Tokens must not be cached by anything on the way (RFC 6749 5.1).
    base = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Pragma", "no-cache")]
    return status, base + (headers or []), json.dumps(document, separators=(",", ":")).encode()


def _registry_error(code: str, message: str, headers: list[tuple[str, str]] | None = None) -> Answer:
    """An error in the registry's own format (Docker's token protocol has none of its own)."""
    error = RegistryError(code, message)
    return _json(error.status, {"errors": [error_dict(error)]}, headers)


def _oauth_error(status: int, error: str, description: str) -> Answer:
    return _json(status, {"error": error, "error_description": description})
