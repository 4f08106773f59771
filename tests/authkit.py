"""Shared material for the auth tests: real RSA keys, tokens, and the table of hostile requests.

The same table runs in-process against the authorizer's ``lambda_handler``
(``test_auth_authorizer.py``) and end-to-end against ``vmregistry serve``
(``test_auth_serve.py``), so both paths refuse exactly the same things.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from vmregistry.auth import generate_key_pair, mint_token

__all__ = ["AUDIENCE", "CASES", "ISSUER", "Case", "Keys", "b64url"]

ISSUER = "https://auth.example.test"
AUDIENCE = "vmregistry.example.test"
TAGS = "/v1/team/app/tags/list"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Keys:
    """The Auth Server's key pair, and a stranger's."""

    private_pem: bytes
    public_pem: bytes
    other_private_pem: bytes

    @classmethod
    def generate(cls) -> Keys:
        private, public = generate_key_pair(2048)
        other, _ = generate_key_pair(2048)
        return cls(private, public, other)

    @cached_property
    def private_key(self) -> Any:
        return serialization.load_pem_private_key(self.private_pem, password=None)

    def claims(self, scopes: Sequence[str] = (), **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": "alice",
            "iat": now,
            "exp": now + 600,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "jti": uuid.uuid4().hex,
        }
        if scopes:
            claims["scope"] = " ".join(scopes)
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *scopes: str, **overrides: Any) -> str:
        """A valid token (issuer and audience set) granting ``scopes``; overrides change claims (None drops)."""
        return jwt.encode(self.claims(scopes, **overrides), self.private_key, algorithm="RS256")

    def bearer(self, *scopes: str, **overrides: Any) -> str:
        return "Bearer " + self.token(*scopes, **overrides)

    def minted(self, *scopes: str) -> str:
        """Through the project's own minting function (what ``vmregistry token`` uses)."""
        return mint_token(self.private_pem, subject="bob", scopes=scopes, issuer=ISSUER, audience=AUDIENCE)


_NESTED_CLAIMS = b'{"a":' * 900 + b"1" + b"}" * 900


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_public_key(keys: Keys) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(keys.claims(["repository:team/app:pull"])).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(keys.public_pem, signing_input, hashlib.sha256).digest()
    return f"Bearer {header}.{payload}.{b64url(signature)}"


def _alg_none(keys: Keys, signature: str = "") -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(keys.claims(["repository:team/app:pull"])).encode())
    return f"Bearer {header}.{payload}.{signature}"


def _tampered(keys: Keys) -> str:
    header, _, signature = keys.token("repository:team/app:push").split(".")
    payload = b64url(json.dumps(keys.claims(["repository:**:*"])).encode())
    return f"Bearer {header}.{payload}.{signature}"


def _bad_signature(keys: Keys) -> str:
    token = keys.token("repository:team/app:pull")
    flipped = "A" if token[-5] != "A" else "B"
    return "Bearer " + token[:-5] + flipped + token[-4:]


def _other_key(keys: Keys) -> str:
    other = serialization.load_pem_private_key(keys.other_private_pem, password=None)
    return "Bearer " + jwt.encode(keys.claims(["repository:team/app:pull"]), other, algorithm="RS256")  # type: ignore[arg-type]


def _rs512(keys: Keys) -> str:
    return "Bearer " + jwt.encode(keys.claims(["repository:team/app:pull"]), keys.private_key, algorithm="RS512")


@dataclass(frozen=True)
class Case:
    """One hostile or broken request and the status it must get (401 or 403)."""

    id: str
    expect: int
    authorization: Callable[[Keys], str | None]
    method: str = "GET"
    path: str = TAGS
    query: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)


def _c(id: str, expect: int, authorization: Callable[[Keys], str | None], **kw: Any) -> Case:  # noqa: A002
    return Case(id, expect, authorization, **kw)


PULL = "repository:team/app:pull"
NOW = int(time.time())

CASES: tuple[Case, ...] = (
    # No usable credentials at all: 401.
    _c("missing-header", 401, lambda k: None),
    _c("empty-header", 401, lambda k: ""),
    _c("basic-scheme", 401, lambda k: "Basic YWxpY2U6c2VjcmV0"),
    _c("token-without-scheme", 401, lambda k: k.token(PULL)),
    _c("bearer-without-token", 401, lambda k: "Bearer"),
    _c("bearer-blank", 401, lambda k: "Bearer    "),
    _c("garbage", 401, lambda k: "Bearer not-a-jwt"),
    _c("garbage-three-segments", 401, lambda k: "Bearer aaaa.bbbb.cccc"),
    _c("two-tokens", 401, lambda k: f"Bearer {k.token(PULL)} {k.token(PULL)}"),
    _c("truncated", 401, lambda k: k.bearer(PULL)[:-20]),
    _c("signature-stripped", 401, lambda k: k.bearer(PULL).rsplit(".", 1)[0] + "."),
    _c("bad-signature", 401, _bad_signature),
    _c("tampered-payload", 401, _tampered),
    _c("another-key", 401, _other_key),
    _c("alg-none", 401, _alg_none),
    _c("alg-none-with-signature", 401, lambda k: _alg_none(k, "c2lnbmF0dXJl")),
    _c("hs256-public-key-as-secret", 401, _hs256_with_public_key),
    _c("rs512-not-pinned-alg", 401, _rs512),
    _c("expired", 401, lambda k: k.bearer(PULL, iat=NOW - 7200, exp=NOW - 3600)),
    _c("expired-beyond-leeway", 401, lambda k: k.bearer(PULL, iat=NOW - 600, exp=int(time.time()) - 90)),
    _c("not-yet-valid", 401, lambda k: k.bearer(PULL, nbf=NOW + 3600, exp=NOW + 7200)),
    _c("no-exp", 401, lambda k: k.bearer(PULL, exp=None)),
    _c("wrong-issuer", 401, lambda k: k.bearer(PULL, iss="https://evil.example.test")),
    _c("missing-issuer", 401, lambda k: k.bearer(PULL, iss=None)),
    _c("wrong-audience", 401, lambda k: k.bearer(PULL, aud="another-service")),
    _c("missing-audience", 401, lambda k: k.bearer(PULL, aud=None)),
    _c("subject-not-a-string", 401, lambda k: k.bearer(PULL, sub=12345)),
    _c("scope-claim-not-a-string", 401, lambda k: k.bearer(scope=42)),
    _c("access-claim-not-a-list", 401, lambda k: k.bearer(access="repository:team/app:pull")),
    _c("too-many-scopes", 401, lambda k: k.bearer(*["repository:a:pull"] * 257)),
    _c("oversized-token", 401, lambda k: k.bearer(PULL, padding="x" * 9000)),
    _c("non-ascii-header", 401, lambda k: "Bearer tökén.ünïcode.sïg"),
    _c("deeply-nested-header", 401, lambda k: "Bearer " + _b64url(b"[" * 2500 + b"]" * 2500) + ".e30.c2ln"),
    _c("deeply-nested-payload", 401, lambda k: f"Bearer {_b64url(b'{}')}.{_b64url(_NESTED_CLAIMS)}.c2ln"),
    _c("token-in-query-not-header", 401, lambda k: None, query="access_token=anything"),
    # A valid token that does not grant this request: 403.
    _c("scope-for-another-repository", 403, lambda k: k.bearer("repository:other/app:pull")),
    _c("prefix-name-boundary", 403, lambda k: k.bearer("repository:team/*:pull"), path="/v1/teamevil/x/tags/list"),
    _c("exact-name-not-children", 403, lambda k: k.bearer("repository:team:pull"), path="/v1/team/x/tags/list"),
    _c("star-is-one-component", 403, lambda k: k.bearer("repository:team/*:pull"), path="/v1/team/a/b/tags/list"),
    _c("string-prefix-of-name", 403, lambda k: k.bearer("repository:team/ap:pull")),
    _c("star-inside-component", 403, lambda k: k.bearer("repository:team*:pull"), path="/v1/teamevil/tags/list"),
    _c("action-missing-pull", 403, lambda k: k.bearer("repository:team/app:push,delete")),
    _c(
        "action-missing-push",
        403,
        lambda k: k.bearer("repository:team/app:pull,delete"),
        method="PUT",
        path="/v1/team/app/manifests/v1",
    ),
    _c(
        "action-missing-delete",
        403,
        lambda k: k.bearer("repository:team/app:pull,push"),
        method="DELETE",
        path="/v1/team/app/manifests/v1",
    ),
    _c("malformed-no-actions", 403, lambda k: k.bearer("repository:team/app")),
    _c("malformed-no-type", 403, lambda k: k.bearer("team/app:pull")),
    _c("malformed-other-type", 403, lambda k: k.bearer("registry:team/app:pull")),
    _c("malformed-unknown-action", 403, lambda k: k.bearer("repository:team/app:pulll")),
    _c("malformed-uppercase-pattern", 403, lambda k: k.bearer("repository:TEAM/APP:pull")),
    _c("malformed-empty-scope", 403, lambda k: k.bearer(scope="")),
    _c(
        "access-claim-other-type",
        403,
        lambda k: k.bearer(access=[{"type": "registry", "name": "team/app", "actions": ["pull"]}]),
    ),
    _c(
        "access-claim-bad-actions",
        403,
        lambda k: k.bearer(access=[{"type": "repository", "name": "team/app", "actions": "pull"}]),
    ),
    _c("non-ascii-name", 403, lambda k: k.bearer("repository:**:*"), path="/v1/tëam/app/tags/list"),
    _c("homoglyph-name", 403, lambda k: k.bearer("repository:team/*:pull"), path="/v1/team/\u0430pp/tags/list"),
    _c("dot-dot-name", 403, lambda k: k.bearer("repository:team/**:*"), path="/v1/team/../admin/tags/list"),
    _c("uppercase-name", 403, lambda k: k.bearer("repository:**:*"), path="/v1/Team/App/tags/list"),
)
