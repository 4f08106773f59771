"""Settings, read from ``VMREGISTRY_*`` environment variables.

Lambda functions are configured only through the environment (the stack sets
these variables); ``vmregistry serve`` maps each command-line flag onto the
same variable (``-s3-bucket`` -> ``VMREGISTRY_S3_BUCKET``), so one name means
one setting everywhere. :data:`SETTINGS_HELP` documents each of them and is
what ``--help`` and the README show.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["INLINE_LIMIT", "MAX_MANIFEST_SIZE", "SETTINGS_HELP", "AuthMode", "Settings", "env_name"]

# API Gateway hands Lambda binary bodies base64-encoded (4/3 larger) inside a
# 6 MB invocation payload: 4 MiB of raw body leaves room for headers.
INLINE_LIMIT = 4 * 1024 * 1024
MAX_MANIFEST_SIZE = 4 * 1024 * 1024

SETTINGS_HELP: dict[str, str] = {
    "storage": "storage backend: filesystem or s3",
    "fs_path": "root directory of the filesystem backend",
    "s3_bucket": "S3 bucket (required with -storage s3)",
    "s3_region": "S3 region",
    "s3_endpoint": "S3 endpoint URL for S3-compatible stores (enables path-style addressing)",
    "s3_access_key": "S3 access key id (default: the AWS credential chain)",
    "s3_secret_key": "S3 secret access key (default: the AWS credential chain)",
    "s3_skip_bucket_creation": "do not create the bucket at start if it is missing",
    "presign_expires": "lifetime of presigned data-plane URLs, in seconds",
    "public_url": "base URL clients use to reach this server's data plane (local mode)",
    "verify_inline_bytes": "multipart blobs larger than this are verified by a worker, after the API answered",
    "verify_function": "name of the Lambda function that verifies large uploads (set by the stack)",
    "oci_upload_limit": "largest blob a /v2 upload session may grow to, in bytes (0: no limit; the stack sets"
    " what a function can verify within API Gateway's 29 s)",
    "auth": "jwt: every request needs a verified token; none: no authentication (unset: jwt inside Lambda)",
    "auth_public_key": "PEM file with the Auth Server's RSA public key (absent: no authentication)",
    "auth_issuer": "required 'iss' claim of tokens, if set",
    "auth_audience": "required 'aud' claim of tokens, if set",
    "auth_leeway": "clock skew allowed on exp/nbf, in seconds",
    "auth_realm": "realm URL put in WWW-Authenticate challenges",
    "auth_service": "service name put in WWW-Authenticate challenges",
}


def env_name(setting: str) -> str:
    return f"VMREGISTRY_{setting.upper()}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


AuthMode = Literal["jwt", "none"]


def _auth_mode(raw: str | None, env: Mapping[str, str]) -> AuthMode:
    """``none`` only when asked for by name, or outside Lambda when unset: a stack that forgets it fails closed."""
    mode = (raw or "").strip().lower()
    if mode == "none":
        return "none"
    if mode:
        return "jwt"
    return "jwt" if env.get("AWS_LAMBDA_FUNCTION_NAME") else "none"


@dataclass(frozen=True, slots=True)
class Settings:
    storage: Literal["filesystem", "s3"] = "filesystem"
    fs_path: str = "./storage"
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_skip_bucket_creation: bool = False
    presign_expires: int = 900
    public_url: str | None = None
    auth_public_key: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_leeway: int = 30
    auth_realm: str = "vmregistry"
    auth_service: str = "vmregistry"
    inline_limit: int = INLINE_LIMIT
    # Hashing from S3 inside Lambda runs at a few hundred MB/s: 1 GiB fits API Gateway's 29 s.
    verify_inline_bytes: int = 1024 * 1024 * 1024
    verify_function: str | None = None
    oci_upload_limit: int = 0
    """``/v2`` uploads are verified within their closing request (OCI clients expect 201, not 202):
    where requests are cut at 29 s, a session may grow only as far as can be hashed in time. 0: no limit."""
    auth: AuthMode = "none"
    """``jwt``: every request needs an authorizer context with grants (deny by default)."""

    @property
    def auth_required(self) -> bool:
        return self.auth != "none"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(setting: str) -> str | None:
            value = env.get(env_name(setting))
            return value if value else None

        storage = (get("storage") or "filesystem").lower()
        if storage not in ("filesystem", "s3"):
            raise ValueError(f"{env_name('storage')} must be 'filesystem' or 's3', not {storage!r}")
        defaults = cls()
        return cls(
            storage="s3" if storage == "s3" else "filesystem",
            fs_path=get("fs_path") or defaults.fs_path,
            s3_bucket=get("s3_bucket"),
            s3_region=get("s3_region") or defaults.s3_region,
            s3_endpoint=get("s3_endpoint"),
            s3_access_key=get("s3_access_key"),
            s3_secret_key=get("s3_secret_key"),
            s3_skip_bucket_creation=_truthy(get("s3_skip_bucket_creation")),
            presign_expires=int(get("presign_expires") or defaults.presign_expires),
            public_url=get("public_url"),
            auth_public_key=get("auth_public_key"),
            auth_issuer=get("auth_issuer"),
            auth_audience=get("auth_audience"),
            auth_leeway=int(get("auth_leeway") or defaults.auth_leeway),
            verify_inline_bytes=int(get("verify_inline_bytes") or defaults.verify_inline_bytes),
            verify_function=get("verify_function"),
            oci_upload_limit=int(get("oci_upload_limit") or defaults.oci_upload_limit),
            auth_realm=get("auth_realm") or defaults.auth_realm,
            auth_service=get("auth_service") or defaults.auth_service,
            auth=_auth_mode(get("auth"), env),
        )
