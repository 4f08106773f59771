"""What a VM image is made of: disks, a config blob, and the manifest that ties them together.

Each disk is read once (:mod:`._scan`): the same pass computes its SHA-256,
its size, the ranges that hold data, and its format, found by magic bytes
(qcow2 ``QFI\\xfb`` with its virtual size from the header, ISO 9660 ``CD001``
at byte 32769, VMDK ``KDMV``, VHDX ``vhdxfile``; anything else is raw). The
result is cached by path, size, mtime and inode (:mod:`._state`), so running a
push again after an interruption does not read a multi-GB disk a second time.

A disk pushed with zero parts (:mod:`._parts`) carries, in its layer
descriptor, the ranges a pull must fetch (:data:`vmregistry.extents.DATA_ANNOTATION`);
the registry checks them against the zeros it filled itself.

Documents are serialised deterministically (sorted keys, no whitespace), so
pushing the same disks with the same settings yields the same digests.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmregistry import mediatypes
from vmregistry.client._errors import UsageError
from vmregistry.digests import digest_of
from vmregistry.extents import DATA_ANNOTATION, Extent

__all__ = [
    "ISO_MAGIC_OFFSET",
    "TITLE_ANNOTATION",
    "DiskInfo",
    "build_config",
    "build_manifest",
    "detect_format",
    "disk_file_name",
    "parse_memory",
]

TITLE_ANNOTATION = "org.opencontainers.image.title"
FORMAT_ANNOTATION = "vmregistry.disk.format"
READ_SIZE = 4 * 1024 * 1024
ISO_MAGIC_OFFSET = 32769
_EXTENSIONS = {"qcow2": "qcow2", "iso": "iso", "raw": "img", "vmdk": "vmdk", "vhdx": "vhdx"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,200}")
_RESERVED_NAMES = frozenset({"manifest.json", "config.json"})


@dataclass(frozen=True, slots=True)
class DiskInfo:
    path: Path
    size: int
    digest: str
    format: str
    virtual_size: int | None = None
    extents: tuple[Extent, ...] | None = None
    """The ranges that hold data, as read (``None``: not known, all of it may)."""
    data_extents: str | None = None
    """What the layer descriptor tells pulls to fetch, once the push declared the rest zero."""

    def config_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.path.name,
            "format": self.format,
            "size": self.size,
            "digest": self.digest,
        }
        if self.virtual_size is not None:
            entry["virtualSize"] = self.virtual_size
        return entry

    def descriptor(self) -> dict[str, Any]:
        annotations = {TITLE_ANNOTATION: self.path.name, FORMAT_ANNOTATION: self.format}
        if self.data_extents is not None:
            annotations[DATA_ANNOTATION] = self.data_extents
        return {"mediaType": mediatypes.DISK, "digest": self.digest, "size": self.size, "annotations": annotations}


def detect_format(head: bytes) -> tuple[str, int | None]:
    """(format, virtual size if the header says) from the first 64 KiB or more of a disk."""
    if head[:4] == b"QFI\xfb" and len(head) >= 32:
        return "qcow2", int.from_bytes(head[24:32], "big")
    if head[:4] == b"KDMV":
        return "vmdk", None
    if head[:8] == b"vhdxfile":
        return "vhdx", None
    if head[ISO_MAGIC_OFFSET : ISO_MAGIC_OFFSET + 5] == b"CD001":
        return "iso", None
    return "raw", None


def parse_memory(text: str) -> int:
    """``2048``, ``2048M``, ``2G`` or ``512MiB`` -> MiB."""
    found = re.fullmatch(r"\s*(\d+)\s*([MmGg])?(?:i?[Bb])?\s*", text)
    if found is None:
        raise UsageError(f"memory is a number of MiB or a size like 2G or 512M, not {text!r}")
    value = int(found.group(1))
    return value * 1024 if (found.group(2) or "M").upper() == "G" else value


def build_config(
    disks: list[DiskInfo],
    *,
    user_config: Mapping[str, Any] | None = None,
    cpus: int | None = None,
    memory_mib: int | None = None,
    bootloader: str | None = None,
    architecture: str | None = None,
) -> bytes:
    """The config blob: the user's JSON, then the flags over it, then the disks as measured.

    Defaults (1 CPU, 1024 MiB, uefi) fill only what neither gave.
    """
    config: dict[str, Any] = {"cpus": 1, "memoryMiB": 1024, "bootloader": "uefi"}
    config.update(user_config or {})
    for key, value in (
        ("cpus", cpus),
        ("memoryMiB", memory_mib),
        ("bootloader", bootloader),
        ("architecture", architecture),
    ):
        if value is not None:
            config[key] = value
    if not isinstance(config["cpus"], int) or isinstance(config["cpus"], bool) or config["cpus"] < 1:
        raise UsageError(f"cpus must be a positive integer, not {config['cpus']!r}")
    if not isinstance(config["memoryMiB"], int) or config["memoryMiB"] < 1:
        raise UsageError(f"memoryMiB must be a positive integer, not {config['memoryMiB']!r}")
    config["disks"] = [disk.config_entry() for disk in disks]
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def load_user_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot use {path} as the image config: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: the image config must be a JSON object")
    return value


def build_manifest(config: bytes, disks: list[DiskInfo]) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.MANIFEST,
        "config": {
            "mediaType": mediatypes.CONFIG,
            "digest": digest_of(config),
            "size": len(config),
        },
        "layers": [disk.descriptor() for disk in disks],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def disk_file_name(layer: Mapping[str, Any], index: int, taken: set[str]) -> str:
    """A safe local file name for a layer: its title if harmless and unique, else ``diskN.<ext>``.

    The title comes from the registry, so it is never trusted as a path.
    """
    annotations = layer.get("annotations") or {}
    title = annotations.get(TITLE_ANNOTATION) if isinstance(annotations, dict) else None
    if (
        isinstance(title, str)
        and _SAFE_NAME.fullmatch(title)
        and title not in _RESERVED_NAMES
        and title not in taken
        and not title.endswith((".partial", ".partial.json"))
    ):
        return title
    fmt = annotations.get(FORMAT_ANNOTATION) if isinstance(annotations, dict) else None
    name = f"disk{index}.{_EXTENSIONS.get(str(fmt), 'img')}"
    while name in taken:
        index += 1
        name = f"disk{index}.{_EXTENSIONS.get(str(fmt), 'img')}"
    return name
