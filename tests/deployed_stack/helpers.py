"""What the deployed-stack tests share: the seed image's config, challenges, and requests they all send."""

from __future__ import annotations

from vmregistry import mediatypes

from tests.deployed import DeployedStack
from tests.httpclient import Reply

__all__ = [
    "CONFIG",
    "GATEWAY_CHALLENGE",
    "MISSING",
    "OCTETS",
    "UNKNOWN_UUID",
    "MiB",
    "link_target",
    "put_manifest",
]

MiB = 1024 * 1024
CONFIG = b'{"cpus": 2, "memoryMiB": 2048}'
GATEWAY_CHALLENGE = 'Bearer realm="vmregistry",service="vmregistry"'
"""API Gateway's own 401: the realm and service, no scope (a gateway response's headers are fixed)."""
MISSING = "sha256:" + "0" * 64
UNKNOWN_UUID = "12345678-1234-4234-8234-123456789abc"
OCTETS = {"Content-Type": "application/octet-stream"}


def put_manifest(stack: DeployedStack, repository: str, reference: str, body: bytes, **headers: str) -> Reply:
    return stack.api(
        "PUT", f"/v1/{repository}/manifests/{reference}", body, {"Content-Type": mediatypes.MANIFEST, **headers}
    )


def link_target(link: str | None) -> str:
    assert link is not None
    assert link.endswith('>; rel="next"'), link
    return link[1 : link.index(">")]
