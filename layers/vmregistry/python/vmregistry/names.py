"""The grammar of everything a client names: repositories, tags, digests, uploads.

Every value that reaches storage keys passes through one of the ``parse_*``
functions first, so a key can never contain ``..``, an absolute path, a
control character or anything else outside these grammars. The patterns are
ASCII-only on purpose (``[a-z0-9]``, never ``\\w`` or ``\\d``, which match
Unicode).
"""

from __future__ import annotations

import re

from vmregistry import digests
from vmregistry.errors import RegistryError

__all__ = [
    "MAX_NAME_LENGTH",
    "RESERVED_COMPONENTS",
    "is_digest",
    "is_valid_name",
    "parse_digest",
    "parse_name",
    "parse_reference",
    "parse_tag",
    "parse_upload_id",
]

# OCI distribution-spec: path components of lowercase alphanumerics separated
# by '.', '_', '__' or runs of '-'; components joined by '/'.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

MAX_NAME_LENGTH = 255

# API Gateway matches a static path segment before a variable one, so after the
# first component these words would be taken for the API's own segments
# (/v1/team/blobs/... is "blobs of team", /v2/team/referrers/... "referrers of team"):
# a name using them could not be routed once deployed. Reserved everywhere, so local
# mode accepts exactly what AWS serves.
RESERVED_COMPONENTS = frozenset({"blobs", "manifests", "tags", "referrers"})

# The filesystem layout stores a manifest at <repository>/<reference>/manifest.json;
# a tag spelled like that file would make a directory where a file must be.
_RESERVED_TAGS = frozenset({"manifest.json"})


def is_valid_name(name: str) -> bool:
    return (
        len(name) <= MAX_NAME_LENGTH
        and _NAME_RE.fullmatch(name) is not None
        and not RESERVED_COMPONENTS.intersection(name.split("/")[1:])
    )


def parse_name(name: str) -> str:
    reserved = RESERVED_COMPONENTS.intersection(name.split("/")[1:])
    if reserved and _NAME_RE.fullmatch(name):
        raise RegistryError(
            "NAME_INVALID",
            f"{', '.join(sorted(reserved))!s} cannot follow the first component of a repository name:"
            " the API uses these words as path segments",
            {"name": name[:300]},
        )
    if not is_valid_name(name):
        raise RegistryError(
            "NAME_INVALID",
            "repository names are lowercase path components ([a-z0-9] separated by '.', '_', '__' or '-')"
            f" joined by '/', at most {MAX_NAME_LENGTH} characters",
            {"name": name[:300]},
        )
    return name


def parse_tag(tag: str) -> str:
    if _TAG_RE.fullmatch(tag) is None:
        raise RegistryError("TAG_INVALID", "tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", {"tag": tag[:300]})
    if tag in _RESERVED_TAGS:
        raise RegistryError("TAG_INVALID", f"the tag {tag!r} is reserved", {"tag": tag})
    return tag


def is_digest(value: str) -> bool:
    """A digest of an accepted algorithm (:data:`vmregistry.digests.ALGORITHMS`), lowercase hex of its length."""
    return digests.split(value) is not None


def parse_digest(digest: str) -> str:
    if not is_digest(digest):
        algorithm = digest.split(":", 1)[0] if ":" in digest else ""
        message = (
            f"unsupported digest algorithm {algorithm[:50]!r}: sha256 and sha512 are accepted"
            if algorithm and algorithm not in digests.ALGORITHMS
            else "digests are 'sha256:' and 64, or 'sha512:' and 128, lowercase hex characters"
        )
        raise RegistryError("DIGEST_INVALID", message, {"digest": digest[:300]})
    return digest


def parse_reference(reference: str) -> str:
    """A manifest reference: a digest when it contains ':', a tag otherwise."""
    return parse_digest(reference) if ":" in reference else parse_tag(reference)


def parse_upload_id(upload_id: str) -> str:
    # An id we never issued is simply unknown: no detail about the grammar.
    if _UPLOAD_ID_RE.fullmatch(upload_id) is None:
        raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id[:100]})
    return upload_id
