"""The registry's domain layer: what each operation of either API means, independent of HTTP.

Handlers parse a request, call one method here and map the result to a
response; every client mistake surfaces as a :class:`~vmregistry.errors.RegistryError`.

Each Lambda function performs one operation, so it should load only the part of
the domain it uses: a HEAD blob has no use for the upload or manifest modules,
and importing them is cold-start time (``bench/lambda_cold.py``). Hence the
services of :class:`Registry` are built on first use and this package's names
are resolved on first access.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from vmregistry.lazy import lazy_exports

if TYPE_CHECKING:
    from vmregistry.config import Settings
    from vmregistry.registry.appends import Appends, Progress
    from vmregistry.registry.blobs import BlobInfo, Blobs, Download
    from vmregistry.registry.listing import Page, page_of, parse_page_size
    from vmregistry.registry.manifests import Form, Manifest, Manifests, accepts
    from vmregistry.registry.sessions import PartResult, UploadStatus, UploadVerifier
    from vmregistry.registry.uploads import Uploads
    from vmregistry.storage import Storage

__all__ = [
    "BlobInfo",
    "Download",
    "Form",
    "Manifest",
    "Page",
    "PartResult",
    "Progress",
    "Registry",
    "UploadStatus",
    "UploadVerifier",
    "accepts",
    "page_of",
    "parse_page_size",
]

_EXPORTS = {
    "BlobInfo": "blobs",
    "Download": "blobs",
    "Page": "listing",
    "page_of": "listing",
    "parse_page_size": "listing",
    "Form": "manifests",
    "Manifest": "manifests",
    "Progress": "appends",
    "accepts": "manifests",
    "PartResult": "sessions",
    "UploadStatus": "sessions",
    "UploadVerifier": "sessions",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


class Registry:
    """One storage backend seen through the registry's operations.

    The services hold nothing but their configuration, so two threads that race to
    build one on first use build equal ones, and either may win.
    """

    def __init__(
        self, storage: Storage, settings: Settings | None = None, verifier: UploadVerifier | None = None
    ) -> None:
        if settings is None:
            from vmregistry.config import Settings

            settings = Settings()
        self.storage = storage
        self.settings = settings
        self.verifier = verifier

    @cached_property
    def blobs(self) -> Blobs:
        from vmregistry.registry.blobs import Blobs

        return Blobs(self.storage, self.settings)

    @cached_property
    def uploads(self) -> Uploads:
        from vmregistry.registry.uploads import Uploads

        return Uploads(self.storage, self.settings, self.blobs, self.verifier)

    @cached_property
    def appends(self) -> Appends:
        from vmregistry.registry.appends import Appends

        return Appends(self.uploads)

    @cached_property
    def manifests(self) -> Manifests:
        from vmregistry.registry.manifests import Manifests

        return Manifests(self.storage, self.blobs)
