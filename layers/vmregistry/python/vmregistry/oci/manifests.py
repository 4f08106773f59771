"""Manifests and indexes as a registry must check them: parsed once, into a typed result.

:func:`parse_manifest` takes the bytes of a manifest PUT and its ``Content-Type``
and returns a :class:`ParsedManifest`: which kind of document it is, the blobs
it needs in the repository (distinct, with sizes), the manifests an index
needs, its ``subject`` and the ``artifactType`` the referrers API lists it
under. Everything else a handler does (storage lookups, the ``OCI-Subject``
header) works from that result, without parsing again.

Kinds: the OCI image manifest and index (image-spec 1.1, artifacts included),
Docker's schema 2 manifest and manifest list, and the registry's own VM manifest
(``/v1``). Docker schema 1 is refused.

Which media type a document has
    Its ``mediaType`` field. A ``Content-Type`` naming a manifest type must agree
    with it. OCI documents may omit the field (image-spec makes it a SHOULD):
    then the ``Content-Type`` decides, or, when that is absent or generic, the
    shape (``manifests`` is an index, ``config``/``layers`` a manifest). A document
    without ``mediaType`` whose shape is ambiguous is refused, so the type of any
    stored manifest can be read back from its bytes alone. Docker and VM
    documents must carry the field (Docker's own parsers require it).

The cap on descriptors (issue 19)
    A manifest lists at most :data:`MAX_DESCRIPTORS` layers and an index at most
    :data:`MAX_DESCRIPTORS` manifests (config and subject come on top). Real
    content is far below it: container images stay under 128 layers (the
    overlay-filesystem limit), indexes list a few dozen platforms, and a VM disk
    cut in 64 MiB chunks needs 4,096 chunks for 256 GiB. The cost side: each
    distinct blob costs one storage round trip; S3 from Lambda answers a HEAD in
    5 to 20 ms, LocalStack on this machine in 4.5 ms (issue 19: 1,000 layers in
    4.1 s, sequentially). 4,096 distinct blobs then take 18 s even one at a time
    at LocalStack's pace, inside API Gateway's 29 s, and about 2.3 s with eight
    lookups in flight (issue 19's bounded parallelism and 5 s target). The 4 MiB
    size limit alone would allow about 28,000 descriptors (150 bytes each): 2 min
    one at a time, 16 s eight at a time, leaving no room for S3's slow tails.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from vmregistry.errors import RegistryError
from vmregistry.oci import mediatypes as mt
from vmregistry.oci.descriptors import Descriptor, invalid, is_media_type, parse_descriptor, string_map
from vmregistry.oci.jsondoc import DocumentError, parse_document

__all__ = ["MAX_DESCRIPTORS", "ManifestKind", "ParsedManifest", "media_type_of", "parse_manifest"]

MAX_DESCRIPTORS = 4096


class ManifestKind(enum.Enum):
    OCI_MANIFEST = mt.OCI_MANIFEST
    OCI_INDEX = mt.OCI_INDEX
    DOCKER_MANIFEST = mt.DOCKER_MANIFEST
    DOCKER_MANIFEST_LIST = mt.DOCKER_MANIFEST_LIST
    VM_MANIFEST = mt.VM_MANIFEST

    @property
    def is_index(self) -> bool:
        return self in (ManifestKind.OCI_INDEX, ManifestKind.DOCKER_MANIFEST_LIST)


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    kind: ManifestKind
    media_type: str
    """What ``Content-Type`` a GET answers with: the document's type, resolved as above."""
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    """The document's own ``artifactType`` field."""
    annotations: dict[str, str] = field(default_factory=dict)
    blobs: tuple[Descriptor, ...] = ()
    """Config and layers the repository must hold: distinct by digest, foreign layers left out."""
    foreign_layers: tuple[Descriptor, ...] = ()
    """Non-distributable layers: their bytes are at their ``urls``, the registry need not hold them."""
    children: tuple[Descriptor, ...] = ()
    """Manifests an index references, distinct by digest: the repository must hold them."""

    @property
    def referrer_artifact_type(self) -> str | None:
        """What the referrers API lists the document under: ``artifactType``, else a manifest's config type."""
        if self.artifact_type is not None:
            return self.artifact_type
        return self.config.media_type if self.config is not None else None


_KNOWN = {kind.value: kind for kind in ManifestKind}
_SCHEMA1 = frozenset({mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED})
_MAY_OMIT_MEDIA_TYPE = frozenset({mt.OCI_MANIFEST, mt.OCI_INDEX})


def _shape(document: dict[str, Any]) -> str | None:
    has_manifests = "manifests" in document
    has_blobs = "config" in document or "layers" in document
    if has_manifests == has_blobs:
        return None
    return mt.OCI_INDEX if has_manifests else mt.OCI_MANIFEST


def media_type_of(document: object) -> str:
    """The media type of a document :func:`parse_manifest` accepted: its ``mediaType``, else its shape."""
    if not isinstance(document, dict):
        return mt.OCI_MANIFEST
    declared = document.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return _shape(document) or mt.OCI_MANIFEST


def _resolve_media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    claimed = mt.base_type(content_type)
    if declared is not None:
        if not isinstance(declared, str):
            raise invalid("mediaType must be a string")
        if declared in _SCHEMA1 or claimed in _SCHEMA1:
            raise invalid("Docker schema 1 manifests are not supported: push schema 2 or OCI", mediaType=declared)
        if declared not in _KNOWN:
            raise invalid(
                "unsupported manifest media type",
                mediaType=declared[:200],
                supported=sorted(_KNOWN),
            )
        if claimed in _KNOWN and claimed != declared:
            raise invalid("Content-Type must match the manifest's mediaType", contentType=claimed, mediaType=declared)
        return declared
    shape = _shape(document)
    if claimed in _KNOWN and claimed not in _MAY_OMIT_MEDIA_TYPE:
        raise invalid(f"a {claimed} document must carry its mediaType", contentType=claimed)
    if shape is None:
        raise invalid("without a mediaType, a document must have either manifests (an index) or config and layers")
    if claimed in _KNOWN and claimed != shape:
        raise invalid("Content-Type does not match the document's shape", contentType=claimed, shape=shape)
    return shape


def _descriptor_list(value: object, where: str) -> tuple[Descriptor, ...]:
    if not isinstance(value, list):
        raise invalid(f"{where} must be a list of descriptors")
    if len(value) > MAX_DESCRIPTORS:
        # Before looking at any of them: the cap bounds the work, not only the storage lookups.
        raise invalid(
            f"{where} lists {len(value)} descriptors; at most {MAX_DESCRIPTORS} are accepted",
            limit=MAX_DESCRIPTORS,
            count=len(value),
        )
    return tuple(parse_descriptor(item, f"{where}[{i}]") for i, item in enumerate(value))


def _distinct(descriptors: list[Descriptor]) -> tuple[Descriptor, ...]:
    """First occurrence of each digest; one digest listed with two sizes is a contradiction."""
    by_digest: dict[str, Descriptor] = {}
    for descriptor in descriptors:
        known = by_digest.setdefault(descriptor.digest, descriptor)
        if known.size != descriptor.size:
            raise invalid(
                "one digest is listed with two different sizes",
                digest=descriptor.digest,
                sizes=sorted({known.size, descriptor.size}),
            )
    return tuple(by_digest.values())


def _artifact_type(document: dict[str, Any]) -> str | None:
    value = document.get("artifactType")
    if value is not None and not is_media_type(value):
        raise invalid("artifactType must be a media type", artifactType=str(value)[:200])
    return value


def _manifest(document: dict[str, Any], kind: ManifestKind) -> ParsedManifest:
    config = parse_descriptor(document.get("config"), "config")
    layers = _descriptor_list(document.get("layers"), "layers")
    if kind is ManifestKind.VM_MANIFEST:
        # The seed's /v1 rules, unchanged: a VM config and disks only.
        if config.media_type != mt.VM_CONFIG:
            raise invalid(f"config.mediaType must be {mt.VM_CONFIG}", mediaType=config.media_type)
        for i, layer in enumerate(layers):
            if layer.media_type != mt.VM_DISK:
                raise invalid(f"layers[{i}].mediaType must be {mt.VM_DISK}", mediaType=layer.media_type)
    oci = kind is ManifestKind.OCI_MANIFEST
    foreign = [layer for layer in layers if layer.media_type in mt.FOREIGN_LAYER_TYPES]
    return ParsedManifest(
        kind=kind,
        media_type=kind.value,
        config=config,
        layers=layers,
        subject=parse_descriptor(document["subject"], "subject") if oci and "subject" in document else None,
        artifact_type=_artifact_type(document) if oci else None,
        annotations=string_map(document.get("annotations"), "annotations"),
        blobs=_distinct([config, *(layer for layer in layers if layer.media_type not in mt.FOREIGN_LAYER_TYPES)]),
        foreign_layers=_distinct(foreign),
    )


def _index(document: dict[str, Any], kind: ManifestKind) -> ParsedManifest:
    manifests = _descriptor_list(document.get("manifests"), "manifests")
    oci = kind is ManifestKind.OCI_INDEX
    return ParsedManifest(
        kind=kind,
        media_type=kind.value,
        manifests=manifests,
        subject=parse_descriptor(document["subject"], "subject") if oci and "subject" in document else None,
        artifact_type=_artifact_type(document) if oci else None,
        annotations=string_map(document.get("annotations"), "annotations"),
        children=_distinct(list(manifests)),
    )


def parse_manifest(data: bytes, content_type: str | None = None) -> ParsedManifest:
    """Validate a pushed manifest or index; every problem is a MANIFEST_INVALID naming it.

    The caller enforces the byte size limit before reading the body; this parses
    at most once and never recurses on client input (:mod:`.jsondoc`).
    """
    try:
        document = parse_document(data)
    except DocumentError as exc:
        raise RegistryError("MANIFEST_INVALID", f"manifest: {exc}") from None
    if not isinstance(document, dict):
        raise invalid("a manifest is a JSON object")
    version = document.get("schemaVersion")
    if version != 2 or isinstance(version, bool):
        raise invalid("schemaVersion must be 2", schemaVersion=str(version)[:50])
    kind = _KNOWN[_resolve_media_type(document, content_type)]
    return _index(document, kind) if kind.is_index else _manifest(document, kind)
