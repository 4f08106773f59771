"""Choosing the backend: the one place that knows every implementation."""

from __future__ import annotations

from vmregistry.config import Settings
from vmregistry.storage.base import Storage
from vmregistry.storage.signing import UrlSigner

__all__ = ["open_storage"]


def open_storage(settings: Settings, signer: UrlSigner | None = None) -> Storage:
    """The backend ``settings`` name. ``signer`` serves the filesystem's local data plane."""
    if settings.storage == "s3":
        # Imported here so filesystem-only processes never pay for boto3.
        from vmregistry.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    from vmregistry.storage.filesystem import FilesystemStorage

    return FilesystemStorage(settings.fs_path, signer)
