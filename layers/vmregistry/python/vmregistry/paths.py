"""Where everything lives in storage: the one module that builds keys.

::

    <root>/
    ├── blobs/<algorithm>/<hex>                        content, shared by all repositories
    ├── repositories/<name>/
    │   ├── _layers/<algorithm>/<hex>                  "this repository holds that blob"; body: its size
    │   ├── _manifests/<algorithm>/<hex>               a manifest, byte for byte, under its digest
    │   ├── _referrers/<algorithm>/<hex>/              the manifests whose ``subject`` is that digest:
    │   │   └── <algorithm>/<hex>                      one each, its referrers-API descriptor (JSON)
    │   └── _tags/<tag>                                a tag: its manifest's digest, then a copy of its bytes
    ├── catalog/<name>!                                the repository has a manifest (empty body)
    ├── zeros/<algorithm>/<hex>                        ranges of that blob its uploads declared zero (JSON)
    ├── fill/zeros-<bytes>                             all-zero objects zero parts are copied from (S3)
    └── uploads/<uuid>/
        ├── session.json                               upload session state (repository, mode, ...)
        ├── data                                       multipart target, until verified and moved
        ├── zeros/<NNNNN>                              zero parts declared by one request: numbers and etags
        ├── holes                                      the zero ranges of the joined data, until published
        ├── chunks/<offset>.<length>                   OCI chunks not yet joined into a part (under 5 MiB)
        └── body                                       a streamed request body, staged for its handler

Why this shape:

* Repository components match ``[a-z0-9]...``, so ``_layers``, ``_manifests``
  and ``_tags`` can never be (the start of) a nested repository's name, and
  ``repositories/team/_tags/`` lists ``team``'s tags and nothing of
  ``team/app``.
* Listings are pages of a sorted key range (``list(prefix, start_after=...)``):
  a page of tags is a page of ``repositories/<name>/_tags/``, a page of the
  catalog a page of ``catalog/``, so a page costs the page, not the registry.
  The catalog entry ends in ``!``, which sorts before every character a name
  may contain (``-`` is the smallest), so the key order is exactly the names'
  lexical order, nested names included (``a`` < ``a-b`` < ``a/b``), and a name
  and the names nested under it (``a!`` beside ``a/``) never collide on a
  filesystem.
* A tag holds a copy of its manifest, so a pull by tag is one read.
* A blob's zero ranges (``zeros/``) are known only from uploads that declared
  them, and storage filled them itself: what a manifest's extent annotation
  is checked against (:mod:`vmregistry.registry.zeros`). They sit beside the
  blob's key range, not in it, so listing ``blobs/`` lists blobs; garbage
  collection deletes a blob's record with the blob. ``fill/`` belongs to the
  S3 backend (:mod:`vmregistry.storage.s3_zeros`) and is never collected.
* A referrer is listed under its subject when it is pushed (and unlisted when it
  is deleted), so the referrers API reads one key range and small descriptors,
  never every manifest of the repository. The subject need not exist (OCI allows
  pushing a referrer first).
* A staged body (local mode receives the body of a streamed route into
  storage before it runs the handler, :mod:`vmregistry.local.gateway`) has an
  id of its own, never a session's, so it is a leftover like any other key
  under ``uploads/`` without a ``session.json``: the upload sweep removes it
  if its request died before removing it.

Every argument here has already passed :mod:`vmregistry.names`; these
functions only assemble strings.
"""

from __future__ import annotations

from vmregistry.digests import split

__all__ = [
    "BLOBS_PREFIX",
    "CATALOG_PREFIX",
    "FILL_PREFIX",
    "REPOSITORIES_PREFIX",
    "UPLOADS_PREFIX",
    "ZEROS_PREFIX",
    "blob_key",
    "catalog_key",
    "digest_of_key",
    "fill_key",
    "is_staged_body_key",
    "layer_key",
    "layers_prefix",
    "manifest_key",
    "manifests_prefix",
    "referrer_key",
    "referrers_prefix",
    "repository_of_catalog_key",
    "staged_body_key",
    "tag_key",
    "tags_prefix",
    "upload_chunk_key",
    "upload_chunks_prefix",
    "upload_data_key",
    "upload_holes_key",
    "upload_prefix",
    "upload_session_key",
    "upload_zeros_key",
    "upload_zeros_prefix",
    "zeros_key",
]

BLOBS_PREFIX = "blobs/"
REPOSITORIES_PREFIX = "repositories/"
CATALOG_PREFIX = "catalog/"
UPLOADS_PREFIX = "uploads/"
ZEROS_PREFIX = "zeros/"
FILL_PREFIX = "fill/"
_CATALOG_END = "!"


def _digest_path(digest: str) -> str:
    parsed = split(digest)
    if parsed is None:  # names.parse_digest ran first: this is a bug, not a client mistake
        raise ValueError(f"not a digest: {digest!r}")
    return f"{parsed.algorithm}/{parsed.hex}"


def digest_of_key(key: str, prefix: str) -> str | None:
    """``<prefix><algorithm>/<hex>`` -> ``<algorithm>:<hex>`` (``None`` for anything else)."""
    algorithm, _, hex_digest = key.removeprefix(prefix).partition("/")
    text = f"{algorithm}:{hex_digest}"
    return text if key.startswith(prefix) and split(text) is not None else None


def blob_key(digest: str) -> str:
    return f"{BLOBS_PREFIX}{_digest_path(digest)}"


def _repository(name: str) -> str:
    return f"{REPOSITORIES_PREFIX}{name}/"


def layers_prefix(repository: str) -> str:
    return f"{_repository(repository)}_layers/"


def layer_key(repository: str, digest: str) -> str:
    return f"{layers_prefix(repository)}{_digest_path(digest)}"


def manifests_prefix(repository: str) -> str:
    return f"{_repository(repository)}_manifests/"


def manifest_key(repository: str, digest: str) -> str:
    return f"{manifests_prefix(repository)}{_digest_path(digest)}"


def referrers_prefix(repository: str, subject: str) -> str:
    return f"{_repository(repository)}_referrers/{_digest_path(subject)}/"


def referrer_key(repository: str, subject: str, digest: str) -> str:
    return f"{referrers_prefix(repository, subject)}{_digest_path(digest)}"


def tags_prefix(repository: str) -> str:
    return f"{_repository(repository)}_tags/"


def tag_key(repository: str, tag: str) -> str:
    return f"{tags_prefix(repository)}{tag}"


def catalog_key(repository: str) -> str:
    return f"{CATALOG_PREFIX}{repository}{_CATALOG_END}"


def repository_of_catalog_key(key: str) -> str | None:
    if not key.startswith(CATALOG_PREFIX) or not key.endswith(_CATALOG_END):
        return None
    return key[len(CATALOG_PREFIX) : -len(_CATALOG_END)] or None


def upload_prefix(upload_id: str) -> str:
    return f"{UPLOADS_PREFIX}{upload_id}/"


def upload_session_key(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}session.json"


def upload_data_key(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}data"


def upload_zeros_prefix(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}zeros/"


def upload_zeros_key(upload_id: str, first_part: int) -> str:
    return f"{upload_zeros_prefix(upload_id)}{first_part:05d}"


def upload_holes_key(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}holes"


def zeros_key(digest: str) -> str:
    return f"{ZEROS_PREFIX}{_digest_path(digest)}"


def fill_key(size: int) -> str:
    return f"{FILL_PREFIX}zeros-{size}"


def upload_chunks_prefix(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}chunks/"


def upload_chunk_key(upload_id: str, offset: int, length: int) -> str:
    """Zero-padded offsets sort in byte order (20 digits: any int64)."""
    return f"{upload_chunks_prefix(upload_id)}{offset:020d}.{length}"


_STAGED_BODY = "body"


def staged_body_key(staging_id: str) -> str:
    return f"{upload_prefix(staging_id)}{_STAGED_BODY}"


def is_staged_body_key(key: str) -> bool:
    """Is ``key`` where a streamed body is staged (``uploads/<id>/body``)?"""
    head, _, name = key.removeprefix(UPLOADS_PREFIX).partition("/")
    return key.startswith(UPLOADS_PREFIX) and bool(head) and "/" not in head and name == _STAGED_BODY
