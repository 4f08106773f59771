"""A VM image's two spellings: the seed's ``/v1`` manifest and the OCI image manifest OCI tools copy.

skopeo and podman (containers/image) treat a manifest type they do not know as
Docker schema 1 and fail ("unsupported schema version 2"), and no registry they
copy to accepts ``application/vnd.vmregistry.manifest.v1+json``; but an OCI image
manifest whose config and layers have the registry's media types copies
between registries byte for byte (``skopeo copy --preserve-digests``, tried
with distribution 2.8.2). So a VM image has an OCI form::

    {"artifactType": "application/vnd.vmregistry.manifest.v1+json",
     "config": {"mediaType": "application/vnd.vmregistry.config.v1+json", ...},
     "layers": [{"mediaType": "application/vnd.vmregistry.disk.v1", ...}],
     "mediaType": "application/vnd.oci.image.manifest.v1+json", "schemaVersion": 2}

which is the seed form with ``mediaType`` moved to ``artifactType`` (the name
the referrers API and oras filter by) and the OCI type put in its place. Both
are serialised the way the seed client writes manifests (sorted keys, no
spaces), so the translation is a bijection on what the seed client produces:
:func:`to_seed` of :func:`to_oci` gives back the very bytes, and both digests
are fixed by either one. The two forms have different digests; which one a
repository stores and how ``/v1`` and ``/v2`` find the other is the handlers'
business (see the report of issue 13's preparation).
"""

from __future__ import annotations

import json
from typing import Any

from vmregistry.oci import mediatypes as mt
from vmregistry.oci.jsondoc import DocumentError, parse_document

__all__ = ["VM_ARTIFACT_TYPE", "canonical", "is_vm_image", "to_oci", "to_seed"]

VM_ARTIFACT_TYPE = mt.VM_MANIFEST
"""The ``artifactType`` of a VM image's OCI form: the seed's manifest type, so the two name one thing."""


def canonical(document: dict[str, Any]) -> bytes:
    """The seed client's serialisation (``client/_image.py``): sorted keys, no whitespace, ASCII."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _document(data: bytes) -> dict[str, Any] | None:
    try:
        document = parse_document(data)
    except DocumentError:
        return None
    return document if isinstance(document, dict) else None


def is_vm_image(document: dict[str, Any]) -> bool:
    """An OCI-form VM image: an OCI manifest of a VM config and disks, no subject, our artifact type or none."""
    config = document.get("config")
    layers = document.get("layers")
    return (
        document.get("mediaType") == mt.OCI_MANIFEST
        and document.get("artifactType", VM_ARTIFACT_TYPE) == VM_ARTIFACT_TYPE
        and isinstance(config, dict)
        and config.get("mediaType") == mt.VM_CONFIG
        and isinstance(layers, list)
        and all(isinstance(layer, dict) and layer.get("mediaType") == mt.VM_DISK for layer in layers)
        and "subject" not in document
    )


def to_oci(seed: bytes) -> bytes | None:
    """The OCI form of a seed-form manifest; ``None`` if ``seed`` is not one."""
    document = _document(seed)
    if document is None or document.get("mediaType") != mt.VM_MANIFEST or "artifactType" in document:
        return None
    return canonical({**document, "mediaType": mt.OCI_MANIFEST, "artifactType": VM_ARTIFACT_TYPE})


def to_seed(oci: bytes) -> bytes | None:
    """The seed form of an OCI-form VM image (what ``/v1`` clients read); ``None`` if ``oci`` is not one."""
    document = _document(oci)
    if document is None or not is_vm_image(document):
        return None
    seed = {key: value for key, value in document.items() if key != "artifactType"}
    return canonical({**seed, "mediaType": mt.VM_MANIFEST})
