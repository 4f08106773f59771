"""The media types of a VM image."""

from __future__ import annotations

__all__ = ["CONFIG", "DISK", "LAYER_TYPES", "MANIFEST"]

MANIFEST = "application/vnd.vmregistry.manifest.v1+json"
CONFIG = "application/vnd.vmregistry.config.v1+json"
DISK = "application/vnd.vmregistry.disk.v1"

LAYER_TYPES = frozenset({DISK})
