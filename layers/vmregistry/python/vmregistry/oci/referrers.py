"""The referrers API's answer: an OCI image index listing the manifests whose ``subject`` is a digest.

``GET /v2/<name>/referrers/<digest>[?artifactType=<type>]`` answers 200 with
``Content-Type: application/vnd.oci.image.index.v1+json`` and an index whose
``manifests`` are one descriptor per referrer: its media type, digest and size,
its artifact type (the document's ``artifactType``, else a manifest's config
media type; an index without one has none) and every annotation it carries.
There is no 404: an unknown subject has an empty list. With an ``artifactType``
query the list holds only that type, and the answer says so with
``OCI-Filters-Applied: artifactType``.

The descriptors come from :func:`referrer_descriptor` at PUT time, so a
listing reads small stored descriptors instead of every referrer's manifest.
Entries are ordered by digest so that the same set always yields the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vmregistry.oci import mediatypes as mt
from vmregistry.oci.manifests import ParsedManifest

__all__ = ["FILTERS_APPLIED_HEADER", "ReferrersIndex", "build_referrers_index", "referrer_descriptor"]

FILTERS_APPLIED_HEADER = "OCI-Filters-Applied"


@dataclass(frozen=True, slots=True)
class ReferrersIndex:
    body: bytes
    filters_applied: tuple[str, ...]

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": mt.OCI_INDEX, "Content-Length": str(len(self.body))}
        if self.filters_applied:
            headers[FILTERS_APPLIED_HEADER] = ",".join(self.filters_applied)
        return headers


def referrer_descriptor(parsed: ParsedManifest, digest: str, size: int) -> dict[str, Any]:
    """The entry a referrer contributes to its subject's list (stored when the referrer is pushed)."""
    entry: dict[str, Any] = {"mediaType": parsed.media_type, "digest": digest, "size": size}
    artifact_type = parsed.referrer_artifact_type
    if artifact_type is not None:
        entry["artifactType"] = artifact_type
    if parsed.annotations:
        entry["annotations"] = dict(parsed.annotations)
    return entry


def build_referrers_index(descriptors: Iterable[Mapping[str, Any]], artifact_type: str | None = None) -> ReferrersIndex:
    """The index of ``descriptors`` (as :func:`referrer_descriptor` made them), filtered by artifact type.

    An empty ``artifact_type`` is no filter (``?artifactType=`` names nothing).
    """
    entries = sorted(descriptors, key=lambda entry: str(entry["digest"]))
    filters: tuple[str, ...] = ()
    if artifact_type:
        entries = [entry for entry in entries if entry.get("artifactType") == artifact_type]
        filters = ("artifactType",)
    document = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [dict(entry) for entry in entries]}
    return ReferrersIndex(json.dumps(document, separators=(",", ":")).encode(), filters)
