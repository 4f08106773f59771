"""``vmregistry keygen``, ``token`` and ``add-user``: stand-ins for the Auth Server, for trying auth.

The registry never issues tokens: an external Auth Server signs them with its
RSA private key and the registry holds only the public half. To try that
without an Auth Server, ``keygen`` writes a key pair (``auth.pub`` is what
``vmregistry serve`` looks for; ``auth.key`` is written with mode 0600) and
``token`` mints a token from the private key with the scopes you name.
``add-user`` fills the users file of the development token endpoint
(``vmregistry serve -token-users``, :mod:`vmregistry.local.token_service`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from vmregistry.cli._parsing import command, flag

__all__ = ["register"]


def register(subparsers: Any) -> None:
    keygen = command(
        subparsers,
        "keygen",
        run_keygen,
        help="write an RSA key pair for signing tokens (auth.key, auth.pub)",
        description="Write a new RSA key pair: the private key (mode 0600) signs tokens with `vmregistry token`;"
        " the public key, auth.pub, is what `vmregistry serve` verifies them with.",
    )
    keygen.add_argument(*flag("dir"), dest="dir", default=".", metavar="DIR", help="where to write (default: .)")
    keygen.add_argument(
        *flag("private"),
        dest="private",
        default="auth.key",
        metavar="FILE",
        help="private key file name (default: auth.key)",
    )
    keygen.add_argument(
        *flag("public"),
        dest="public",
        default="auth.pub",
        metavar="FILE",
        help="public key file name (default: auth.pub)",
    )
    keygen.add_argument(*flag("bits"), dest="bits", type=int, default=3072, help="RSA key size (default: 3072)")
    keygen.add_argument(*flag("force"), dest="force", action="store_true", help="overwrite existing files")

    token = command(
        subparsers,
        "token",
        run_token,
        help="mint a signed token (RS256) with repository scopes",
        description="Print a bearer token signed with a private key. Scopes are"
        " repository:<pattern>:<actions>, e.g. 'repository:team/*:pull,push'; actions are pull, push, delete"
        " and *. Patterns: exact names, '*' for one path component, a final '**' for one or more.",
    )
    token.add_argument(
        *flag("key"), dest="key", default="auth.key", metavar="FILE", help="private key (default: ./auth.key)"
    )
    token.add_argument(
        *flag("scope"),
        dest="scopes",
        action="append",
        default=[],
        metavar="SCOPE",
        help="a scope to grant; repeat the flag for more",
    )
    token.add_argument(
        *flag("subject"),
        dest="subject",
        default=os.environ.get("USER", "developer"),
        help="the 'sub' claim (default: $USER)",
    )
    token.add_argument(
        *flag("lifetime"),
        dest="lifetime",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="seconds until the token expires (default: 3600)",
    )
    token.add_argument(*flag("issuer"), dest="issuer", metavar="ISS", help="the 'iss' claim")
    token.add_argument(*flag("audience"), dest="audience", metavar="AUD", help="the 'aud' claim")
    token.add_argument(
        *flag("access-claim"),
        dest="access_claim",
        action="store_true",
        help="write Docker's 'access' claim instead of the compact 'scope' claim",
    )

    add_user = command(
        subparsers,
        "add-user",
        run_add_user,
        help="add a user to the development token endpoint's users file",
        description="Add (or replace) a user in the users file of `vmregistry serve -token-users FILE`: the password"
        " (read from stdin, or asked for on a terminal) is stored as an scrypt hash, with the scopes the user may"
        " be granted, e.g. -scope 'repository:team/*:pull,push'. The file is written with mode 0600.",
    )
    add_user.add_argument(*flag("users"), dest="users", required=True, metavar="FILE", help="the users file")
    add_user.add_argument(*flag("name"), dest="name", required=True, help="the username")
    add_user.add_argument(
        *flag("scope"), dest="scopes", action="append", default=[], metavar="SCOPE", help="a scope (repeatable)"
    )


def run_add_user(args: argparse.Namespace) -> int:
    import getpass
    import json

    from vmregistry.auth.scopes import parse_compact_scope
    from vmregistry.client import atomic_write_json
    from vmregistry.local.token_service import hash_password

    bad = [scope for scope in args.scopes if parse_compact_scope(scope) is None]
    if bad or not args.name or ":" in args.name:
        print(f"vmregistry add-user: not a scope: {bad}" if bad else "vmregistry add-user: bad name", file=sys.stderr)
        return 2
    password = getpass.getpass(f"password for {args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\n")
    if not password:
        print("vmregistry add-user: the password is empty", file=sys.stderr)
        return 2
    path = Path(args.users)
    try:
        document = json.loads(path.read_text()) if path.exists() else {"users": {}}
        document.setdefault("users", {})[args.name] = {"password": hash_password(password), "access": args.scopes}
        atomic_write_json(path, document, private=True, indent=2)
    except (OSError, ValueError, AttributeError) as exc:
        print(f"vmregistry add-user: {path}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} may now log in through {path}", file=sys.stderr)
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    from vmregistry.auth import generate_key_pair

    directory = Path(args.dir)
    private_path, public_path = directory / args.private, directory / args.public
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing and not args.force:
        print(f"vmregistry keygen: {', '.join(existing)} already exist(s); use -force to replace", file=sys.stderr)
        return 1
    try:
        private_pem, public_pem = generate_key_pair(args.bits)
        directory.mkdir(parents=True, exist_ok=True)
        private_path.unlink(missing_ok=True)
        # Created 0600 from the start: the key is never readable by others, not even briefly.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        public_path.write_bytes(public_pem)
    except (ValueError, OSError) as exc:
        print(f"vmregistry keygen: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {private_path} (private, keep it secret) and {public_path} (public)", file=sys.stderr)
    return 0


def run_token(args: argparse.Namespace) -> int:
    from vmregistry.auth import mint_token
    from vmregistry.auth.scopes import parse_compact_scope

    for scope in args.scopes:
        if parse_compact_scope(scope) is None:
            print(
                f"vmregistry token: {scope!r} is not a scope: repository:<pattern>:<pull|push|delete|*>[,...]",
                file=sys.stderr,
            )
            return 2
    if args.lifetime <= 0:
        print("vmregistry token: -lifetime must be positive", file=sys.stderr)
        return 2
    try:
        private_pem = Path(args.key).read_bytes()
        access = None
        if args.access_claim:
            access = []
            for scope in args.scopes:
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = mint_token(
            private_pem,
            subject=args.subject,
            scopes=() if args.access_claim else args.scopes,
            access=access,
            lifetime=args.lifetime,
            issuer=args.issuer,
            audience=args.audience,
        )
    except (OSError, ValueError, TypeError) as exc:
        print(f"vmregistry token: cannot sign with {args.key}: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0
