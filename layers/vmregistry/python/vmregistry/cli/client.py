"""``vmregistry push|pull|tags|catalog|inspect|rm``: the client commands.

A thin layer over :mod:`vmregistry.client`: parse flags, build a client,
call the API, print. Every :class:`~vmregistry.client.ClientError` becomes
one explanation on stderr and exit status 1 (2 for usage errors), so scripts
can tell "the registry said no" from "I typed it wrong".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vmregistry.cli._parsing import command, flag

__all__ = ["register"]

_AUTH_HELP = (
    "bearer token; default: $VMREGISTRY_TOKEN, a login in $VMREGISTRY_USERNAME/$VMREGISTRY_PASSWORD,"
    " then the credentials file"
    " ($VMREGISTRY_CREDENTIALS or ~/.config/vmregistry/credentials.json, written by 'vmregistry login'),"
    " then docker's config.json and its credential helpers"
)


def _common(parser: argparse.ArgumentParser, *, transfer: bool = False) -> None:
    parser.add_argument(*flag("token"), dest="token", help=_AUTH_HELP)
    parser.add_argument(
        *flag("insecure"), dest="insecure", action="store_true", help="allow plain http to hosts other than loopback"
    )
    parser.add_argument(
        *flag("ca-bundle"),
        dest="ca_bundle",
        metavar="PEM",
        default=os.environ.get("VMREGISTRY_CA_BUNDLE") or None,
        help="also trust the CA certificates in this PEM file (a registry behind a private CA) [VMREGISTRY_CA_BUNDLE]",
    )
    parser.add_argument(
        *flag("retries"),
        dest="retries",
        type=int,
        default=5,
        metavar="N",
        help="retries of each request on connection errors, 5xx and 429 (default 5)",
    )
    if transfer:
        parser.add_argument(*flag("quiet", "-q"), dest="quiet", action="store_true", help="no progress output")
        parser.add_argument(
            *flag("concurrency"),
            dest="concurrency",
            type=int,
            default=4,
            metavar="N",
            help="parallel part uploads / ranged downloads per blob (default 4)",
        )


_PROXY_NOTE = (
    " Proxies: HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or their lowercase forms) are honoured for the registry and"
    " for storage alike."
)


def register(subparsers: Any) -> None:
    push = command(
        subparsers,
        "push",
        run_push,
        help="push a VM image (disks + config) to a registry",
        description="Push disks as one image: each -disk becomes a layer; a config blob records CPUs, memory,"
        " bootloader and the disks' formats and sizes. Prints the manifest digest. An interrupted push"
        " resumes from the parts already uploaded when run again." + _PROXY_NOTE,
    )
    push.add_argument("reference", metavar="REGISTRY/REPO:TAG")
    push.add_argument(
        *flag("disk"), dest="disk", action="append", required=True, metavar="FILE", help="a disk image (repeatable)"
    )
    push.add_argument(*flag("config"), dest="config", metavar="FILE", help="JSON object merged into the image config")
    push.add_argument(*flag("cpus"), dest="cpus", type=int)
    push.add_argument(*flag("memory"), dest="memory", metavar="SIZE", help="memory: MiB, or a size like 2G or 512M")
    push.add_argument(*flag("bootloader"), dest="bootloader", help="e.g. uefi or bios")
    push.add_argument(*flag("arch"), dest="arch", help="CPU architecture, e.g. x86_64 or aarch64")
    push.add_argument(
        *flag("part-size"),
        dest="part_size",
        type=int,
        default=64,
        metavar="MIB",
        help="multipart part size in MiB (at least 5; default 64)",
    )
    _common(push, transfer=True)

    pull = command(
        subparsers,
        "pull",
        run_pull,
        help="pull a VM image into a directory",
        description="Download manifest.json, config.json and the disks into -o DIR, verifying every digest."
        " An interrupted pull resumes from its .partial files." + _PROXY_NOTE,
    )
    pull.add_argument("reference", metavar="REGISTRY/REPO:TAG|@DIGEST")
    pull.add_argument(
        *flag("output", "-o"),
        dest="output",
        metavar="DIR",
        help="output directory (default: the repository's last name component)",
    )
    pull.add_argument(
        *flag("chunk-size"),
        dest="chunk_size",
        type=int,
        default=32,
        metavar="MIB",
        help="size of each ranged GET in MiB (default 32)",
    )
    _common(pull, transfer=True)

    tags = command(
        subparsers,
        "tags",
        run_tags,
        help="list a repository's tags",
        description="Print the repository's tags, one per line, following every page of the listing."
        " Needs pull access to the repository.",
    )
    tags.add_argument("reference", metavar="REGISTRY/REPO")
    _common(tags)

    catalog = command(
        subparsers,
        "catalog",
        run_catalog,
        help="list the repositories you may pull",
        description="Print the registry's repositories, one per line: only those your token may pull.",
    )
    catalog.add_argument("registry", metavar="REGISTRY")
    _common(catalog)

    inspect = command(
        subparsers,
        "inspect",
        run_inspect,
        help="show an image's manifest and config",
        description="Show an image without downloading its disks: digest, media type, CPUs, memory,"
        " bootloader, architecture and each disk's name, format, size and digest (-json: all of it as JSON).",
    )
    inspect.add_argument("reference", metavar="REGISTRY/REPO:TAG|@DIGEST")
    inspect.add_argument(*flag("json"), dest="json", action="store_true", help="print {digest, manifest, config}")
    _common(inspect)

    rm = command(
        subparsers,
        "rm",
        run_rm,
        help="delete a tag, or a manifest (and its tags) by digest",
        description="REGISTRY/REPO:TAG removes that tag (the image stays reachable by digest and other tags);"
        " REGISTRY/REPO@DIGEST removes the manifest and every tag pointing at it. The reference must name a tag"
        " or a digest: rm never assumes ':latest'. Needs delete access. Storage is freed by 'vmregistry gc'.",
    )
    rm.add_argument("reference", metavar="REGISTRY/REPO:TAG|@DIGEST")
    _common(rm)


# -- plumbing -----------------------------------------------------------------

_RESUMABLE = {"push": "parts already stored", "pull": "chunks already downloaded"}


def _resume_hint(command: str, exc: BaseException) -> str:
    """For an interrupted transfer: that running it again resumes it."""
    from vmregistry.client import is_resumable

    if command not in _RESUMABLE or not is_resumable(exc):
        return ""
    return f"\n  run the same command again to resume: the {_RESUMABLE[command]} are kept"


def _guard(run: Any) -> Any:
    """Turn client errors into one message and an exit status."""

    def wrapped(args: argparse.Namespace) -> int:
        from vmregistry.client import ClientError, UsageError

        try:
            return int(run(args) or 0)
        except UsageError as exc:
            print(f"vmregistry {args.command}: {exc}", file=sys.stderr)
            return 2
        except ClientError as exc:
            print(f"vmregistry {args.command}: {exc}{_resume_hint(args.command, exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as exc:
            print(f"vmregistry {args.command}: interrupted{_resume_hint(args.command, exc)}", file=sys.stderr)
            return 130

    wrapped.__name__ = run.__name__
    return wrapped


def _note_retry(exc: Exception, delay: float) -> None:
    print(f"vmregistry: {str(exc).splitlines()[0]}; retrying in {delay:.1f}s", file=sys.stderr)


def _connect(args: argparse.Namespace) -> tuple[Any, Any]:
    from vmregistry.client import RegistryClient

    return RegistryClient.for_reference(
        args.reference,
        token=args.token,
        insecure=args.insecure,
        retries=args.retries,
        ca_bundle=args.ca_bundle,
        on_retry=_note_retry,
    )


def _progress(args: argparse.Namespace) -> Any:
    from vmregistry.client import Progress

    return Progress(sys.stderr, "quiet" if args.quiet else "auto")


# -- commands -------------------------------------------------------------------


@_guard
def run_push(args: argparse.Namespace) -> int:
    from vmregistry.client import PushOptions, UsageError, parse_memory, push_image
    from vmregistry.client._image import load_user_config

    client, ref = _connect(args)
    if ref.digest:
        raise UsageError("push to a tag (REGISTRY/REPO:TAG); the digest is computed from the manifest")
    if args.part_size < 5:
        raise UsageError("--part-size is at least 5 (MiB): storage refuses smaller parts")
    disks = [Path(d) for d in args.disk]
    for disk in disks:
        if not disk.is_file():
            raise UsageError(f"{disk}: not a file")
    result = push_image(
        client,
        ref.repository,
        ref.tag or "latest",
        disks,
        user_config=load_user_config(args.config) if args.config else None,
        cpus=args.cpus,
        memory_mib=parse_memory(args.memory) if args.memory else None,
        bootloader=args.bootloader,
        architecture=args.arch,
        options=PushOptions(concurrency=args.concurrency, part_size=args.part_size * 1024 * 1024),
        progress=_progress(args),
    )
    print(result.digest)
    return 0


@_guard
def run_pull(args: argparse.Namespace) -> int:
    from vmregistry.client import PullOptions, pull_image

    client, ref = _connect(args)
    directory = Path(args.output or ref.repository.rsplit("/", 1)[-1])
    result = pull_image(
        client,
        ref.repository,
        ref.reference,
        directory,
        options=PullOptions(concurrency=args.concurrency, chunk_size=max(1, args.chunk_size) * 1024 * 1024),
        progress=_progress(args),
    )
    if not args.quiet:
        print(f"pulled {ref} into {directory}{os.sep}", file=sys.stderr)
    print(result.digest)
    return 0


@_guard
def run_tags(args: argparse.Namespace) -> int:
    from vmregistry.client import UsageError

    client, ref = _connect(args)
    if ref.tag or ref.digest:
        raise UsageError("tags takes REGISTRY/REPO, without a tag or digest")
    client.want(f"repository:{ref.repository}:pull")
    for tag in client.tags(ref.repository):
        print(tag)
    return 0


@_guard
def run_catalog(args: argparse.Namespace) -> int:
    from vmregistry.client import RegistryClient

    client = RegistryClient.connect(
        args.registry,
        token=args.token,
        insecure=args.insecure,
        retries=args.retries,
        ca_bundle=args.ca_bundle,
        on_retry=_note_retry,
    )
    client.want("registry:catalog:*")  # what a login's token needs for the catalog (Docker's scope)
    for repository in client.catalog():
        print(repository)
    return 0


@_guard
def run_inspect(args: argparse.Namespace) -> int:
    from vmregistry.client import fetch_blob_bytes
    from vmregistry.client._progress import format_bytes

    client, ref = _connect(args)
    manifest = client.get_manifest(ref.repository, ref.reference)
    document = manifest.document()
    config_descriptor = document.get("config") or {}
    config: dict[str, Any] = {}
    if isinstance(config_descriptor, dict) and isinstance(config_descriptor.get("digest"), str):
        config = json.loads(fetch_blob_bytes(client, ref.repository, config_descriptor["digest"]))
    if args.json:
        print(json.dumps({"digest": manifest.digest, "manifest": document, "config": config}, indent=2))
        return 0
    print(f"Image:       {ref}")
    print(f"Digest:      {manifest.digest}")
    print(f"Media type:  {manifest.media_type}")
    for label, key in (
        ("CPUs", "cpus"),
        ("Memory", "memoryMiB"),
        ("Bootloader", "bootloader"),
        ("Arch", "architecture"),
    ):
        if key in config:
            value = f"{config[key]} MiB" if key == "memoryMiB" else config[key]
            print(f"{label + ':':<12} {value}")
    extra = {k: v for k, v in config.items() if k not in ("cpus", "memoryMiB", "bootloader", "architecture", "disks")}
    for key, value in sorted(extra.items()):
        print(f"{key + ':':<12} {json.dumps(value)}")
    by_digest = {d.get("digest"): d for d in config.get("disks", []) if isinstance(d, dict)}
    print("Disks:")
    for layer in document.get("layers", []):
        disk = by_digest.get(layer.get("digest"), {})
        title = (layer.get("annotations") or {}).get("org.opencontainers.image.title", "?")
        virtual = f" (virtual {format_bytes(disk['virtualSize'])})" if disk.get("virtualSize") else ""
        print(
            f"  {title:<24} {disk.get('format', '?'):<6} {format_bytes(layer.get('size', 0)):>10}{virtual}"
            f"  {layer.get('digest')}"
        )
    return 0


@_guard
def run_rm(args: argparse.Namespace) -> int:
    from vmregistry.client import UsageError

    client, ref = _connect(args)
    if not ref.tag and not ref.digest:
        raise UsageError(
            f"{args.reference} names no tag or digest: say which to delete, e.g. {args.reference}:latest"
            f" or {args.reference}@sha256:... (rm never assumes ':latest')"
        )
    client.want(f"repository:{ref.repository}:delete")
    client.delete_manifest(ref.repository, ref.reference)
    what = "manifest and its tags" if ref.digest else "tag"
    print(f"deleted {what} {ref}", file=sys.stderr)
    return 0
