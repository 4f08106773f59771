"""``vmregistry serve``: the local registry, and the storage flags every local command shares.

Every storage flag is also an environment variable (``-s3-bucket`` is
``VMREGISTRY_S3_BUCKET``); a flag wins over the variable, which wins over the
default. Flags are accepted with one dash or two (``-port`` or ``--port``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from vmregistry.config import SETTINGS_HELP, env_name

if TYPE_CHECKING:
    from vmregistry.config import Settings
    from vmregistry.local.app import LocalServer
    from vmregistry.local.gateway import Authorizer
    from vmregistry.local.token_service import TokenService

from vmregistry.cli._parsing import command, flag

__all__ = ["STORAGE_SETTINGS", "add_storage_flags", "register", "settings_from_args"]

_STORAGE_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("storage", {"choices": ["filesystem", "s3"]}),
    ("fs_path", {"metavar": "DIR"}),
    ("s3_bucket", {"metavar": "BUCKET"}),
    ("s3_region", {"metavar": "REGION"}),
    ("s3_endpoint", {"metavar": "URL"}),
    ("s3_access_key", {"metavar": "KEY"}),
    ("s3_secret_key", {"metavar": "SECRET"}),
    ("s3_skip_bucket_creation", {"action": "store_true", "default": None}),
    ("presign_expires", {"metavar": "SECONDS", "type": int}),
]


def add_storage_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("storage (each flag is also an environment variable)")
    for setting, options in _STORAGE_FLAGS:
        group.add_argument(
            *flag(setting), dest=setting, help=f"{SETTINGS_HELP[setting]} [{env_name(setting)}]", **options
        )


def settings_from_args(args: argparse.Namespace, settings: tuple[str, ...]) -> None:
    """Export the flags that were given as ``VMREGISTRY_*`` variables (flag beats environment)."""
    for setting in settings:
        value = getattr(args, setting, None)
        if value is None or value is False:
            continue
        os.environ[env_name(setting)] = "true" if value is True else str(value)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _workers(args: argparse.Namespace) -> int:
    """``-workers``, else ``VMREGISTRY_WORKERS``, else one per CPU."""
    if args.workers is not None:
        return int(args.workers)
    from_env = os.environ.get("VMREGISTRY_WORKERS", "").strip()
    if from_env:
        return _positive(from_env)
    from vmregistry.local.workers import default_workers

    return default_workers()


def register(subparsers: Any) -> None:
    serve = command(
        subparsers,
        "serve",
        run_serve,
        help="run the registry locally",
        description="Serve the /v1 API through the same handlers AWS Lambda runs, from one worker process"
        " per CPU sharing the port (-workers). Stores under ./storage unless told otherwise.",
    )
    serve.add_argument(
        *flag("host"),
        dest="host",
        default=os.environ.get("VMREGISTRY_HOST", "127.0.0.1"),
        help="address to bind; 0.0.0.0 opens the server to the network [VMREGISTRY_HOST]",
    )
    serve.add_argument(
        *flag("port"),
        dest="port",
        type=int,
        default=int(os.environ.get("VMREGISTRY_PORT", "8080")),
        help="TCP port; 0 picks a free one [VMREGISTRY_PORT]",
    )
    serve.add_argument(
        *flag("workers"),
        dest="workers",
        type=_positive,
        metavar="N",
        default=None,
        help="worker processes sharing the port (default: one per CPU, since one Python process uses one"
        " core); 1 serves from this process alone, without a supervisor [VMREGISTRY_WORKERS]",
    )
    serve.add_argument(
        *flag("public_url"),
        dest="public_url",
        metavar="URL",
        help=f"{SETTINGS_HELP['public_url']} [{env_name('public_url')}]",
    )
    auth = serve.add_argument_group("authentication (default key: ./auth.pub if it exists; see docs/auth.md)")
    for setting, metavar in _AUTH_FLAGS:
        auth.add_argument(
            *flag(setting), dest=setting, metavar=metavar, help=f"{SETTINGS_HELP[setting]} [{env_name(setting)}]"
        )
    _add_token_flags(serve)
    add_storage_flags(serve)


_AUTH_FLAGS = [("auth_public_key", "PEM"), ("auth_issuer", "ISS"), ("auth_audience", "AUD")]
STORAGE_SETTINGS = tuple(s for s, _ in _STORAGE_FLAGS)
_SERVE_SETTINGS = (*STORAGE_SETTINGS, "public_url", *(s for s, _ in _AUTH_FLAGS))


def run_serve(args: argparse.Namespace) -> int:
    from vmregistry.config import Settings
    from vmregistry.local.app import LocalServer, serve_workers
    from vmregistry.local.gateway_auth import local_authorizer
    from vmregistry.local.logs import configure_logging
    from vmregistry.local.malloc import limit_arenas
    from vmregistry.storage import StorageError

    limit_arenas()  # before any thread or worker exists: see local/malloc.py

    # Handler logs (Powertools, stdout) and access logs (stderr) must leave whole lines
    # promptly, or a collector reading both from one pipe sees them spliced mid-line.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    configure_logging()
    settings_from_args(args, _SERVE_SETTINGS)
    try:
        workers = _workers(args)
        settings = Settings.from_env()
        authorizer, settings = local_authorizer(settings)
        tokens = _token_service(args, settings, authorizer)
        if workers > 1:
            return serve_workers(
                settings,
                args.host,
                args.port,
                authorizer,
                workers,
                lambda url: _announce(url, settings, workers),
                on_server=lambda worker: _attach_token_service(worker, tokens, authorizer),
            )
        server = LocalServer(settings, args.host, args.port, authorizer=authorizer)
        _attach_token_service(server, tokens, authorizer)
    except (ValueError, OSError, StorageError, argparse.ArgumentTypeError) as exc:
        print(f"vmregistry serve: {exc}", file=sys.stderr)
        return 2
    _announce(server.url, settings, 1)
    # SIGTERM stops like Ctrl-C: the requests being served finish, the access log is written out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def _announce(url: str, settings: Settings, workers: int) -> None:
    where = (
        f"filesystem at {os.path.abspath(settings.fs_path)}"
        if settings.storage == "filesystem"
        else (f"s3 bucket {settings.s3_bucket}")
    )
    processes = "1 process" if workers == 1 else f"{workers} worker processes"
    print(f"vmregistry listening on {url} (storage: {where}; {processes})", file=sys.stderr, flush=True)


# -- the development token endpoint (opt-in; vmregistry/local/token_service.py) --------------------


def _add_token_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "development token endpoint (off unless -token-users; a stand-in for an Auth Server, see docs/auth.md)"
    )
    group.add_argument(*flag("token_users"), dest="token_users", metavar="FILE", help="users file: serve /auth/token")
    group.add_argument(
        *flag("token_key"), dest="token_key", default="auth.key", metavar="PEM", help="signing key (default auth.key)"
    )
    group.add_argument(
        *flag("token_lifetime"),
        dest="token_lifetime",
        type=_positive,
        default=300,
        metavar="SECONDS",
        help="lifetime of the tokens it issues (default 300)",
    )


def _token_service(args: argparse.Namespace, settings: Settings, authorizer: Authorizer | None) -> TokenService | None:
    """The token endpoint ``-token-users`` asks for, checked against the key the server verifies with."""
    if not args.token_users:
        return None
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from vmregistry.auth.tokens import load_public_key
    from vmregistry.local.token_service import TokenService

    if authorizer is None or not settings.auth_public_key:
        raise ValueError("-token-users needs authentication on: a public key (-auth-public-key or ./auth.pub)")
    private_pem = Path(args.token_key).read_bytes()
    private = serialization.load_pem_private_key(private_pem, password=None)
    verifying = load_public_key(settings.auth_public_key)
    if (
        not isinstance(private, rsa.RSAPrivateKey)
        or private.public_key().public_numbers() != verifying.public_numbers()
    ):
        raise ValueError(f"-token-key {args.token_key} is not the private half of the key the server verifies with")
    return TokenService(
        private_pem,
        Path(args.token_users),
        service=settings.auth_service,
        lifetime=args.token_lifetime,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
    )


def _attach_token_service(server: LocalServer, tokens: TokenService | None, authorizer: Authorizer | None) -> None:
    """Serve ``tokens`` at /auth/token and name it as the challenge's realm (unless one is configured)."""
    import dataclasses

    from vmregistry.config import Settings
    from vmregistry.local.gateway_auth import GatewayAuthorizer
    from vmregistry.local.token_service import TOKEN_PATH
    from vmregistry.runtime import configure

    if tokens is None:
        return
    server.gateway.token_service = tokens
    if isinstance(authorizer, GatewayAuthorizer) and authorizer.settings.auth_realm == Settings().auth_realm:
        realm = (server.settings.public_url or server.url).rstrip("/") + TOKEN_PATH
        authorizer.settings = dataclasses.replace(authorizer.settings, auth_realm=realm)
        os.environ[env_name("auth_realm")] = realm
        # The handlers' own challenges (a /v2 token without the scope is refused by the function) too.
        server.registry.settings = dataclasses.replace(server.registry.settings, auth_realm=realm)
        configure(server.registry)
