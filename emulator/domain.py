"""The API's custom domain on the emulator: ``/v2`` at the root of a host, where OCI clients look.

OCI clients (oras, skopeo, podman, containerd) address a registry by host
alone and ask for ``/v2/`` at its root, while the API's own URL puts the stage
first (``/registry/v2/``). In AWS the answer is an API Gateway custom domain
whose base path mapping puts the stage at the root (docs/deploy.md, "OCI
clients"): an operator creates it beside the stack, with a certificate and a
DNS record. The harness creates the same two objects in the emulator (the
domain name and the mapping) for :data:`~emulator.tls.CUSTOM_DOMAIN`, which
the emulator's certificate names and which, like every name under
``.localhost``, is loopback (RFC 6761).
"""

from __future__ import annotations

from emulator.process import Emulator
from emulator.tls import CUSTOM_DOMAIN

__all__ = ["map_custom_domain"]


def map_custom_domain(emulator: Emulator, api_id: str, stage: str) -> None:
    """Map :data:`~emulator.tls.CUSTOM_DOMAIN` to ``stage`` of ``api_id``, at the domain's root."""
    client = emulator.client("apigateway")
    client.create_domain_name(domainName=CUSTOM_DOMAIN, endpointConfiguration={"types": ["REGIONAL"]})
    # No basePath: the root mapping ("(none)"), so /v2/ is at the host's root.
    client.create_base_path_mapping(domainName=CUSTOM_DOMAIN, restApiId=api_id, stage=stage)
