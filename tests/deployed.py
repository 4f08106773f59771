"""The stack deployed into MiniStack, for tests that drive it over HTTPS like a client would.

:func:`deployed_stack` starts the emulator (:mod:`emulator.process`), deploys
the real CDK app into it (:mod:`emulator.deploy`) with a fresh Auth Server key
pair, and yields a :class:`DeployedStack`: raw HTTPS to the API, the presigned
URLs it hands out, the reference client's CLI, tokens. One deployment serves
the whole ``tests/deployed_stack`` package; ``/v1`` and ``/v2`` checks share it.

Raw requests use the API's AWS-shaped form: sent to 127.0.0.1 with
``Host: <api-id>.execute-api.localhost``, the stage is the first path segment
and every ``Location`` the registry writes resolves as it would in AWS. The
CLI gets the path-style URL instead (it needs a name it can resolve). OCI
clients get the API's custom domain (``registry.localhost:<port>``, the stage
at its root: :mod:`emulator.domain`), whose name :func:`resolve_localhost_names`
makes loopback in this process.

When MiniStack is not installed the module fails with the command that
installs it; a developer may skip it with ``VMREGISTRY_SKIP_EMULATOR=1``
(never in CI, where ``CI`` is set).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator.deploy import Deployment, deploy
from emulator.fetch import fetch
from emulator.process import MINISTACK_PYTHON, start
from tests.authkit import AUDIENCE, ISSUER, Keys
from tests.conftest import VMREGISTRY
from tests.httpclient import Reply

__all__ = [
    "MAX_DEPTH",
    "OPT_OUT",
    "VERIFY_INLINE_BYTES",
    "DeployedStack",
    "deployed_stack",
    "resolve_localhost_names",
]

OPT_OUT = "VMREGISTRY_SKIP_EMULATOR"
VERIFY_INLINE_BYTES = 8 * 1024 * 1024
"""Multipart blobs above this go to the ``blob_verify`` worker (202): 1 GiB in a default deployment."""
MAX_DEPTH = 4
"""``maxRepositoryDepth`` of the deployment: names of 1..4 components are routed."""
ALL = "repository:**:pull,push,delete"


@dataclass
class DeployedStack:
    deployment: Deployment
    keys: Keys
    workdir: Path

    @property
    def base(self) -> str:
        """The API's URL in its AWS shape: ``https://<api-id>.execute-api.localhost:<port>/<stage>``."""
        return f"https://{self.deployment.host}/{self.deployment.stage}"

    def ssl_context(self) -> ssl.SSLContext:
        return self.deployment.emulator.ssl_context()

    def bearer(self, *scopes: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": self.keys.bearer(*(scopes or (ALL,)), **claims)}

    def fetch(
        self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """One HTTPS request to the emulator (the API or a presigned URL), nothing followed or added."""
        return Reply(*fetch(self.ssl_context(), method, url, body, headers))

    def api(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        token: bool = True,
    ) -> Reply:
        """``method`` on the API's ``path`` (``/v1/...`` or a ``Location`` the API wrote), with a token
        granting everything unless ``headers`` bring their own or ``token`` is False."""
        sent = {**(self.bearer() if token else {}), **(headers or {})}
        url = f"https://{self.deployment.host}{path}" if path.startswith(f"/{self.deployment.stage}/") else None
        return self.fetch(method, url or self.base + path, body, sent)

    def cli(self, *args: str, scopes: tuple[str, ...] = (ALL,)) -> subprocess.CompletedProcess[str]:
        """The reference client's command line, with a token for ``scopes`` and the emulator's CA."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
        environ |= {
            "VMREGISTRY_TOKEN": self.keys.token(*scopes),
            "VMREGISTRY_CA_BUNDLE": str(self.deployment.emulator.ca),
            "VMREGISTRY_CACHE_DIR": str(self.workdir / "client-cache"),
            "VMREGISTRY_CREDENTIALS": str(self.workdir / "no-credentials.json"),
        }
        return subprocess.run(
            [VMREGISTRY, *args], cwd=self.workdir, env=environ, capture_output=True, text=True, timeout=300
        )

    def reference(self, repository_and_tag: str) -> str:
        """A client reference to this API (path-style URL; the client finds the base path itself)."""
        return f"{self.deployment.url}/{repository_and_tag}"

    def oras(self, *scopes: str) -> Any:
        """oras-py on the API's custom domain, holding a token for ``scopes`` (the stack has no token
        endpoint to fetch one from). Needs :func:`resolve_localhost_names`."""
        import oras.client  # type: ignore[import-untyped]

        client = oras.client.OrasClient(hostname=self.deployment.oci_host, tls_verify=str(self.deployment.emulator.ca))
        client.auth.set_token_auth(self.keys.token(*(scopes or (ALL,))))
        return client


def resolve_localhost_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names under ``.localhost`` are 127.0.0.1 in this process, as RFC 6761 says (curl, browsers and
    systemd-resolved resolve them so; this machine's resolver does not): for clients that look names up
    themselves, like oras-py, to reach the API's custom domain. Every other name resolves as before."""
    resolve = socket.getaddrinfo

    def loopback(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost"):
            host = "127.0.0.1"
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the deployed-stack tests", pytrace=False)
    if os.environ.get(OPT_OUT):
        pytest.skip(f"{reason} ({OPT_OUT} is set)")
    pytest.fail(f"{reason} (or set {OPT_OUT}=1 to skip these tests on purpose)", pytrace=False)


@contextmanager
def deployed_stack(workdir: Path, context: Mapping[str, Any] | None = None) -> Iterator[DeployedStack]:
    """Start MiniStack in ``workdir``, deploy the stack with a fresh key pair, stop it all afterwards."""
    if not MINISTACK_PYTHON.exists():
        _unavailable(f"MiniStack is not installed ({MINISTACK_PYTHON} is missing: run `make ministack`)")
    keys = Keys.generate()
    public_key = workdir / "auth.pub"
    public_key.write_bytes(keys.public_pem)
    state = workdir / "emulator"
    emulator = start(state)
    try:
        deployment = deploy(
            emulator,
            public_key,
            {
                "authIssuer": ISSUER,
                "authAudience": AUDIENCE,
                "maxRepositoryDepth": MAX_DEPTH,
                "verifyInlineBytes": VERIFY_INLINE_BYTES,
                **(context or {}),
            },
        )
        yield DeployedStack(deployment, keys, workdir)
    finally:
        emulator.stop()
