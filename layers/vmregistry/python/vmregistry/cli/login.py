"""``vmregistry login`` and ``logout``: keep (or forget) what lets the client get tokens for a registry.

The work is :mod:`vmregistry.client._login`; this reads the username and
password (``-password-stdin``, or asked for on a terminal) and reports.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from vmregistry.cli._parsing import command, flag
from vmregistry.cli.client import _guard

__all__ = ["register"]


def register(subparsers: Any) -> None:
    login = command(
        subparsers,
        "login",
        run_login,
        help="log in to a registry through its Auth Server",
        description="Follow the registry's challenge to its Auth Server, trade the username and password for a"
        " refresh token, and keep it (mode 0600) in the credentials file, or in a docker credential helper."
        " Later commands fetch short-lived tokens with exactly the scopes they need and renew them as they"
        " expire. The password is read from stdin (-password-stdin) or asked for on a terminal.",
    )
    login.add_argument("registry", metavar="REGISTRY")
    login.add_argument(*flag("username", "-u"), dest="username", help="the username (asked for if omitted)")
    login.add_argument(
        *flag("password-stdin"), dest="password_stdin", action="store_true", help="read the password from stdin"
    )
    login.add_argument(
        *flag("credential-helper"),
        dest="credential_helper",
        metavar="NAME",
        help="keep the login in docker-credential-NAME instead of the credentials file",
    )
    login.add_argument(*flag("insecure"), dest="insecure", action="store_true", help="allow plain http")
    login.add_argument(
        *flag("ca-bundle"), dest="ca_bundle", metavar="PEM", default=os.environ.get("VMREGISTRY_CA_BUNDLE") or None
    )

    logout = command(
        subparsers,
        "logout",
        run_logout,
        help="forget the login kept for a registry",
        description="Remove what 'vmregistry login' kept for REGISTRY (from the credentials file, or from its"
        " credential helper). Logins kept by docker are docker's: 'docker logout' removes those.",
    )
    logout.add_argument("registry", metavar="REGISTRY")
    logout.add_argument(*flag("insecure"), dest="insecure", action="store_true", help=argparse.SUPPRESS)


@_guard
def run_login(args: argparse.Namespace) -> int:
    import getpass

    from vmregistry.client import UsageError, login, parse_registry

    registry = parse_registry(args.registry, insecure=args.insecure)
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise UsageError("give the username with -u USER (stdin is not a terminal)")
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("stdin is not a terminal: pass the password with -password-stdin")
    if not username or not password:
        raise UsageError("a username and a password are needed")
    result = login(registry, username, password, helper=args.credential_helper, ca_bundle=args.ca_bundle)
    if result.stored is None:
        print(f"{registry.base_url} asks for no credentials: nothing was stored", file=sys.stderr)
        return 0
    kept = "a refresh token" if result.refresh_token else "the password (the Auth Server gives no refresh tokens)"
    print(f"Login Succeeded: {username} at {registry.key}; kept {kept} in {result.stored}", file=sys.stderr)
    return 0


@_guard
def run_logout(args: argparse.Namespace) -> int:
    from vmregistry.client import logout, parse_registry

    registry = parse_registry(args.registry, insecure=True)
    if logout(registry):
        print(f"Removed the login for {registry.key}", file=sys.stderr)
        return 0
    print(f"vmregistry logout: not logged in to {registry.key}", file=sys.stderr)
    return 1
