"""Where everything lives in storage: the one module that builds keys.

::

    <root>/
    ├── blobs/sha256/<hex>                           content, shared by all repositories
    ├── links/<repository>/_blobs/<hex>              "this repository holds that blob";
    │                                                the object's body is the blob size
    ├── manifests/<repository>/<reference>/manifest.json
    │                                                reference is a tag or "sha256:<hex>";
    │                                                a tag entry is a copy of the manifest
    └── uploads/<uuid>/
        ├── session.json                             upload session state (repository, mode, ...)
        └── data                                     multipart target, until verified and moved

Repository components match ``[a-z0-9]...`` so ``_blobs`` can never be a
repository component, and the tag ``manifest.json`` is reserved so a reference
directory never collides with a manifest file. Every argument here has already
passed :mod:`vmregistry.names`; these functions only assemble strings.
"""

from __future__ import annotations

__all__ = [
    "BLOBS_PREFIX",
    "LINKS_PREFIX",
    "MANIFESTS_PREFIX",
    "UPLOADS_PREFIX",
    "blob_key",
    "link_key",
    "links_prefix",
    "manifest_key",
    "manifests_prefix",
    "repository_of_manifest_key",
    "upload_data_key",
    "upload_prefix",
    "upload_session_key",
]

BLOBS_PREFIX = "blobs/sha256/"
LINKS_PREFIX = "links/"
MANIFESTS_PREFIX = "manifests/"
UPLOADS_PREFIX = "uploads/"
MANIFEST_FILE = "manifest.json"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def blob_key(digest: str) -> str:
    return f"{BLOBS_PREFIX}{_hex(digest)}"


def links_prefix(repository: str) -> str:
    return f"{LINKS_PREFIX}{repository}/_blobs/"


def link_key(repository: str, digest: str) -> str:
    return f"{links_prefix(repository)}{_hex(digest)}"


def manifests_prefix(repository: str) -> str:
    return f"{MANIFESTS_PREFIX}{repository}/"


def manifest_key(repository: str, reference: str) -> str:
    return f"{manifests_prefix(repository)}{reference}/{MANIFEST_FILE}"


def repository_of_manifest_key(key: str) -> tuple[str, str] | None:
    """``manifests/<repository>/<reference>/manifest.json`` -> (repository, reference)."""
    if not key.startswith(MANIFESTS_PREFIX) or not key.endswith("/" + MANIFEST_FILE):
        return None
    middle = key[len(MANIFESTS_PREFIX) : -len(MANIFEST_FILE) - 1]
    repository, sep, reference = middle.rpartition("/")
    if not sep or not repository or not reference:
        return None
    return repository, reference


def upload_prefix(upload_id: str) -> str:
    return f"{UPLOADS_PREFIX}{upload_id}/"


def upload_session_key(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}session.json"


def upload_data_key(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}data"
