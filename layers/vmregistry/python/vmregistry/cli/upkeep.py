"""``vmregistry sweep-uploads``, ``gc`` and ``reindex``: upkeep of a registry's storage.

Each takes the same storage flags as ``serve`` (and their ``VMREGISTRY_*``
variables), so it runs against the storage a server uses, while it serves.
"""

from __future__ import annotations

import argparse
from typing import Any

from vmregistry.cli._parsing import command
from vmregistry.cli.serve import STORAGE_SETTINGS, add_storage_flags, settings_from_args

__all__ = ["register"]


def register(subparsers: Any) -> None:
    sweep = command(
        subparsers,
        "sweep-uploads",
        run_sweep,
        help="discard upload sessions nobody finished, and what crashed requests left",
        description="Delete upload sessions older than --older-than hours, with their parts, and the leftovers"
        " of requests that died (temporary files, staged bodies, multipart uploads without a session) untouched"
        " for as long. The server also does this at start and hourly (sessions after 24 h, leftovers after 1 h).",
    )
    sweep.add_argument("-older-than", "--older-than", dest="older_than", type=float, default=24.0, metavar="HOURS")
    add_storage_flags(sweep)

    gc = command(
        subparsers,
        "gc",
        run_gc,
        help="free the storage of images and blobs no manifest references",
        description="Garbage collection (docs/gc.md): delete blob links and blobs that no kept manifest"
        " references, and with --delete-untagged the manifests no tag reaches. Anything younger than"
        " --grace hours is spared (an upload in flight). Safe while the registry serves pushes.",
    )
    gc.add_argument(
        "-grace",
        "--grace",
        dest="grace",
        type=float,
        default=1.0,
        metavar="HOURS",
        help="spare blobs, links and manifests younger than this (default: 1)",
    )
    gc.add_argument("-dry-run", "--dry-run", dest="dry_run", action="store_true", help="report, delete nothing")
    gc.add_argument(
        "-delete-untagged",
        "--delete-untagged",
        dest="delete_untagged",
        action="store_true",
        help="also delete manifests no tag reaches (keeping children of kept indexes and their referrers)",
    )
    gc.add_argument(
        "-settle",
        "--settle",
        dest="settle",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="after deleting links, wait this long for manifest pushes in flight before the second mark"
        " (longer than any manifest PUT takes)",
    )
    add_storage_flags(gc)

    reindex = command(
        subparsers,
        "reindex",
        run_reindex,
        help="rebuild the catalog from the manifests (and migrate a vmregistry 0.1 layout)",
        description="Make the catalog list exactly the repositories that hold a manifest, and move"
        " objects stored in vmregistry 0.1's key layout to today's. Safe to run again.",
    )
    add_storage_flags(reindex)


def run_sweep(args: argparse.Namespace) -> int:
    from vmregistry.config import Settings
    from vmregistry.registry import Registry
    from vmregistry.storage.factory import open_storage

    settings_from_args(args, STORAGE_SETTINGS)
    settings = Settings.from_env()
    swept = Registry(open_storage(settings), settings).uploads.sweep(args.older_than * 3600)
    print(f"discarded {swept} older than {args.older_than:g} hours")
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from vmregistry.config import Settings
    from vmregistry.registry.gc import collect_garbage
    from vmregistry.storage.factory import open_storage

    settings_from_args(args, STORAGE_SETTINGS)
    report = collect_garbage(
        open_storage(Settings.from_env()),
        grace=args.grace * 3600,
        dry_run=args.dry_run,
        delete_untagged=args.delete_untagged,
        settle=args.settle,
    )
    verb = "would delete" if args.dry_run else "deleted"
    for manifest in report.manifests_deleted:
        print(f"{verb} manifest {manifest}")
    for digest in report.deleted:
        print(f"{verb} {digest}")
    print(
        f"{verb} {len(report.deleted)} blob(s), {report.freed_bytes} bytes"
        f" ({_human(report.freed_bytes)}), {len(report.manifests_deleted)} untagged manifest(s),"
        f" {report.links_deleted} unreferenced link(s); kept {report.kept} blob(s);"
        f" spared {report.young} younger than {args.grace:g} h"
        + (f"; restored {report.links_restored} link(s) of manifests pushed meanwhile" if report.links_restored else "")
    )
    return 0


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def run_reindex(args: argparse.Namespace) -> int:
    from vmregistry.config import Settings
    from vmregistry.registry.reindex import reindex
    from vmregistry.storage.factory import open_storage

    settings_from_args(args, STORAGE_SETTINGS)
    report = reindex(open_storage(Settings.from_env()))
    print(
        f"migrated {report.migrated} object(s) from the 0.1 layout; catalog: {report.listed} repository(ies)"
        f" added, {report.unlisted} removed"
    )
    return 0
