"""How every subcommand is declared: its name, help and the function that runs it, in one call.

Every parser refuses abbreviated flags (``allow_abbrev=False``): a prefix
would silently pick whichever flag it happens to match today, and another
flag added later would change what an old script means. Flags take one dash
or two (``-token`` or ``--token``), as Go-style tools and ``serve`` spell them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["command", "flag"]


def command(
    subparsers: Any,
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    help: str,  # noqa: A002 - argparse's own keyword
    description: str,
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, which ``run`` carries out."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description, allow_abbrev=False
    )
    parser.set_defaults(func=run)
    return parser


def flag(name: str, short: str | None = None) -> list[str]:
    """``-name`` and ``--name`` (and ``short``, if any); a setting's ``public_url`` is ``-public-url``."""
    name = name.replace("_", "-")
    return [*([short] if short else []), f"-{name}", f"--{name}"]
