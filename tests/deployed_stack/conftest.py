"""One deployment for the whole package: MiniStack started and the stack deployed once, stopped after the last test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deployed import DeployedStack, deployed_stack
from tests.deployed_stack.helpers import CONFIG, put_manifest
from tests.registry_flows import digest_of, make_manifest


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedStack]:
    with deployed_stack(tmp_path_factory.mktemp("deployed")) as deployed:
        yield deployed


@pytest.fixture(scope="package")
def image(stack: DeployedStack) -> dict[str, str]:
    """``team/app:1``: the config blob (sent inline) and a manifest, pushed with raw requests."""
    put = stack.api("PUT", f"/v1/team/app/blobs/{digest_of(CONFIG)}", CONFIG)
    assert put.status == 201, put.body
    manifest = make_manifest((digest_of(CONFIG), len(CONFIG)), [])
    stored = put_manifest(stack, "team/app", "1", manifest)
    assert stored.status == 201, stored.body
    return {"repository": "team/app", "tag": "1", "digest": digest_of(manifest), "manifest": manifest.decode()}
