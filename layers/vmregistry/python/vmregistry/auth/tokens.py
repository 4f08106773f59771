"""Bearer tokens: read them from the request, verify them, and mint them for development.

Tokens are JWTs signed by an external Auth Server with its RSA private key;
the registry holds only the public key. Verification is pinned to RS256: the
algorithm list given to PyJWT is exactly ``["RS256"]`` and the header is
checked before decoding, so ``alg: none``, HS256 "signed" with the public key
as an HMAC secret, or any other algorithm is refused. ``exp`` is required;
``exp`` and ``nbf`` are checked with a small leeway for clock skew; ``iss``
and ``aud`` are checked when the registry is configured with them.

Where the key comes from (``VMREGISTRY_AUTH_PUBLIC_KEY``): a path to a PEM
file (local mode, or an asset bundled with the function), the PEM text
itself, or ``ssm:<parameter name>`` for an SSM parameter the stack provides.
:func:`load_public_key` reads it once per process (once per Lambda cold
start) and caches it.

:func:`generate_key_pair` and :func:`mint_token` stand in for the Auth Server
in ``vmregistry keygen`` / ``vmregistry token`` and in tests.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vmregistry.auth.scopes import AccessSet, ScopeError
from vmregistry.config import Settings
from vmregistry.oci.jsondoc import MAX_DEPTH, nesting_depth

__all__ = [
    "ALGORITHM",
    "MAX_TOKEN_LENGTH",
    "Identity",
    "TokenError",
    "Verifier",
    "bearer_token",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "mint_token",
]

ALGORITHM = "RS256"
# Real tokens are well under 4 KB; API Gateway caps all headers at 10 KB.
MAX_TOKEN_LENGTH = 8192
MIN_KEY_BITS = 2048
# Three base64url segments (the signature may not be empty for RS256).
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class TokenError(Exception):
    """The request carries no acceptable token (401). ``reason`` says why, for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified token: who, and what they may do."""

    subject: str
    access: AccessSet
    expires: int


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise TokenError("the request has no Authorization header")
    if not authorization.isascii():
        raise TokenError("the Authorization header is not ASCII")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenError("the Authorization scheme must be Bearer")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
    if not _TOKEN_RE.fullmatch(token):
        raise TokenError("the bearer token is not a signed JWT (three base64url segments)")
    return token


def _read_source(source: str) -> bytes:
    if source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    if source.startswith("ssm:"):
        import boto3  # only the cloud reads keys from SSM; keep the import off the local path

        client: Any = boto3.client("ssm")
        value = client.get_parameter(Name=source.removeprefix("ssm:"), WithDecryption=True)["Parameter"]["Value"]
        return str(value).encode()
    return Path(source).read_bytes()


@functools.lru_cache(maxsize=8)
def load_public_key(source: str) -> rsa.RSAPublicKey:
    """The RSA public key named by ``source`` (path, PEM text or ``ssm:NAME``), read once.

    Raises OSError when it cannot be read and ValueError when it is not an
    RSA public key of at least 2048 bits.
    """
    data = _read_source(source)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the public key is not an RSA key (tokens are RS256)")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"the RSA key has {key.key_size} bits; at least {MIN_KEY_BITS} are required")
    return key


def _check_nesting(token: str) -> None:
    """A header or payload nested deeper than any claim needs is refused before pyjwt parses it.

    ``json.loads`` recurses per level: an 8 KiB token of ``[[[[...`` would raise
    RecursionError inside pyjwt (a crash, not a refusal).
    """
    for segment in token.split(".")[:2]:
        try:
            decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (ValueError, binascii.Error):
            continue  # not base64: pyjwt says so
        if nesting_depth(decoded) > MAX_DEPTH:
            raise TokenError(f"the token's JSON nests deeper than {MAX_DEPTH} levels")


class Verifier:
    """Verifies tokens against one public key and the configured claims."""

    def __init__(
        self,
        public_key: rsa.RSAPublicKey,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = 30,
    ) -> None:
        self.public_key = public_key
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings) -> Verifier:
        if not settings.auth_public_key:
            raise ValueError("no public key configured (VMREGISTRY_AUTH_PUBLIC_KEY)")
        return cls(
            load_public_key(settings.auth_public_key),
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            leeway=settings.auth_leeway,
        )

    def verify(self, token: str) -> Identity:
        _check_nesting(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"the token is malformed: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"the token must be signed with {ALGORITHM}")
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token was issued by another issuer") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the token is meant for another audience") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the token is invalid: {exc}") from None
        subject = claims.get("sub", "")
        if not isinstance(subject, str):
            raise TokenError("the token's 'sub' claim is not a string")
        try:
            access = AccessSet.from_claims(claims)
        except ScopeError as exc:
            raise TokenError(str(exc)) from None
        return Identity(subject or "anonymous", access, int(claims["exp"]))


def generate_key_pair(bits: int = 3072) -> tuple[bytes, bytes]:
    """A new RSA key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    if bits < MIN_KEY_BITS:
        raise ValueError(f"RSA keys need at least {MIN_KEY_BITS} bits")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def load_private_key(private_key_pem: bytes) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM; ValueError for anything else. (Parsing costs ~0.1 s: do it once.)"""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    return key


def mint_token(
    private_key: bytes | rsa.RSAPrivateKey,
    *,
    subject: str,
    scopes: Sequence[str] = (),
    access: Sequence[Mapping[str, Any]] | None = None,
    lifetime: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    not_before: int | None = None,
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """An RS256 token, as an Auth Server would issue it, signed with ``private_key`` (PEM, or loaded).

    ``scopes`` become the space-separated ``scope`` claim; ``access`` (if
    given) becomes Docker's ``access`` claim.
    """
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": subject, "iat": issued, "exp": issued + lifetime, "jti": uuid.uuid4().hex}
    if scopes:
        claims["scope"] = " ".join(scopes)
    if access is not None:
        claims["access"] = [dict(entry) for entry in access]
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    if not_before is not None:
        claims["nbf"] = not_before
    claims.update(extra or {})
    key = load_private_key(private_key) if isinstance(private_key, bytes) else private_key
    return jwt.encode(claims, key, algorithm=ALGORITHM)
