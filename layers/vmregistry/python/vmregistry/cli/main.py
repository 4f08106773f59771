"""``vmregistry``: run the registry locally, administer it, and talk to one.

Each module listed in :data:`COMMAND_MODULES` adds its subcommands through a
``register(subparsers)`` function and keeps heavy imports inside the code that
runs them, so ``vmregistry --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vmregistry import __version__

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES = (
    "vmregistry.cli.serve",
    "vmregistry.cli.upkeep",
    "vmregistry.cli.tokens",
    "vmregistry.cli.client",
    "vmregistry.cli.login",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmregistry",
        description="A registry for virtual-machine images: serve it locally, or push and pull images.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"vmregistry {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
