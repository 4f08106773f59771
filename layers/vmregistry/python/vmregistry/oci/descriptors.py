"""Content descriptors (image-spec ``descriptor.md``): the typed form and its validation.

A descriptor names content by media type, digest and size, with optional
``urls``, ``annotations``, ``artifactType``, ``data`` (the content itself,
base64) and, in an index, ``platform``. :func:`parse_descriptor` checks one
JSON object against those rules and says where it failed (``layers[3].size``);
unknown fields are allowed, as the spec requires. Every failure is
MANIFEST_INVALID: a descriptor only ever arrives inside a manifest.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from vmregistry.digests import ALGORITHMS, digest_of, is_digest
from vmregistry.errors import RegistryError

__all__ = ["MAX_SIZE", "Descriptor", "invalid", "is_media_type", "parse_descriptor", "string_map"]

MAX_SIZE = 2**63 - 1
"""Sizes are int64 in the spec (and in every Go client)."""

# RFC 6838 section 4.2: type "/" subtype, each a restricted-name of at most 127 characters.
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
_DIGEST_SHAPE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


def invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail or None)


def is_media_type(value: object) -> bool:
    return isinstance(value, str) and _MEDIA_TYPE.fullmatch(value) is not None


def string_map(value: object, where: str) -> dict[str, str]:
    """An ``annotations``-like object: string keys to string values (absent: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid(f"{where} must be an object of string values")
    return value


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None

    @property
    def algorithm(self) -> str:
        return self.digest.split(":", 1)[0]


def _check_digest(value: object, where: str) -> str:
    if isinstance(value, str) and is_digest(value):
        return value
    if isinstance(value, str) and _DIGEST_SHAPE.fullmatch(value):
        algorithm = value.split(":", 1)[0]
        if algorithm not in ALGORITHMS:
            raise invalid(f"{where}: unsupported digest algorithm {algorithm!r} (sha256, sha512)", digest=value[:200])
    raise invalid(f"{where} must be sha256:<64 hex> or sha512:<128 hex>, lowercase", digest=str(value)[:200])


def _check_size(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
        raise invalid(f"{where} must be an integer from 0 to 2^63-1", size=str(value)[:50])
    return value


def _check_data(value: object, where: str, digest: str, size: int) -> None:
    """Embedded content must be what the descriptor says: a client may use it instead of fetching."""
    if not isinstance(value, str):
        raise invalid(f"{where} must be a base64 string")
    try:
        content = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where} is not valid base64") from None
    if len(content) != size:
        raise invalid(f"{where} holds {len(content)} bytes, the descriptor says {size}")
    if digest_of(content, digest.split(":", 1)[0]) != digest:
        raise invalid(f"{where} does not hash to the descriptor's digest", digest=digest)


def _check_platform(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be an object")
    for key in ("architecture", "os"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise invalid(f"{where}.{key} is required and must be a string")
    for key in ("os.version", "variant"):
        if key in value and not isinstance(value[key], str):
            raise invalid(f"{where}.{key} must be a string")
    for key in ("os.features", "features"):
        if key in value and not (isinstance(value[key], list) and all(isinstance(v, str) for v in value[key])):
            raise invalid(f"{where}.{key} must be a list of strings")
    return value


def parse_descriptor(value: object, where: str) -> Descriptor:
    """One descriptor, checked; ``where`` names it in errors (``config``, ``layers[2]``)."""
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not is_media_type(media_type):
        raise invalid(f"{where}.mediaType must be a media type (type/subtype)", mediaType=str(media_type)[:200])
    digest = _check_digest(value.get("digest"), f"{where}.digest")
    size = _check_size(value.get("size"), f"{where}.size")
    urls = value.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) and u for u in urls)):
        raise invalid(f"{where}.urls must be a list of URLs")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not is_media_type(artifact_type):
        raise invalid(f"{where}.artifactType must be a media type", artifactType=str(artifact_type)[:200])
    if "data" in value:
        _check_data(value["data"], f"{where}.data", digest, size)
    platform = _check_platform(value["platform"], f"{where}.platform") if "platform" in value else None
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=artifact_type,
        annotations=string_map(value.get("annotations"), f"{where}.annotations"),
        urls=tuple(urls or ()),
        platform=platform,
    )
