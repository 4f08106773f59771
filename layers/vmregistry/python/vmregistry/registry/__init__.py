"""The registry's domain layer: what each /v1 operation means, independent of HTTP.

Handlers parse a request, call one method here and map the result to a
response; every client mistake surfaces as a :class:`~vmregistry.errors.RegistryError`.
"""

from __future__ import annotations

from vmregistry.config import Settings
from vmregistry.registry.blobs import BlobInfo, Blobs, Download
from vmregistry.registry.listing import Page, paginate, parse_page_size
from vmregistry.registry.manifests import Manifest, Manifests, accepts
from vmregistry.registry.uploads import PartResult, Uploads, UploadStatus, Verifier
from vmregistry.storage import Storage

__all__ = [
    "BlobInfo",
    "Download",
    "Manifest",
    "Page",
    "PartResult",
    "Registry",
    "UploadStatus",
    "Verifier",
    "accepts",
    "paginate",
    "parse_page_size",
]


class Registry:
    """One storage backend seen through the registry's operations."""

    def __init__(self, storage: Storage, settings: Settings | None = None, verifier: Verifier | None = None) -> None:
        self.storage = storage
        self.settings = settings or Settings()
        self.blobs = Blobs(storage, self.settings)
        self.uploads = Uploads(storage, self.settings, self.blobs, verifier)
        self.manifests = Manifests(storage, self.blobs)
