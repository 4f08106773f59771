"""What the client refuses: tampered data, missing permissions, plain http to other hosts, hopeless retries.

A registry (or anything between it and the client) that alters a blob or a
manifest must make the pull fail without leaving a file under the final
name; a token that only grants pull must not push; the registry's token must
never reach the storage host (the local data plane, like S3, refuses
requests that carry one, so a pull with a token only works if the client
strips it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmregistry import paths
from vmregistry.client import (
    HINTS,
    DigestMismatch,
    PullOptions,
    RegistryAPIError,
    RegistryClient,
    TransientError,
    UsageError,
    parse_reference,
    pull_image,
    push_image,
)
from vmregistry.client._transport import with_retries
from vmregistry.errors import ERROR_CODES

from tests.cli import mint, run_vmregistry
from tests.conftest import RunningServer, start_server, stop_server

MiB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("isolated_client")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- tampering ---------------------------------------------------------------------


def test_a_blob_altered_in_storage_fails_the_pull_and_leaves_no_file(server: RunningServer, tmp_path: Path) -> None:
    # GIVEN a pushed disk whose stored bytes are then altered behind the registry's back
    data = os.urandom(6 * MiB)
    (tmp_path / "disk.img").write_bytes(data)
    with RegistryClient.connect(server.url) as client:
        push_image(client, "safety/tampered", "v1", [tmp_path / "disk.img"])
        stored = server.storage / "blobs" / "sha256" / digest_of(data).removeprefix("sha256:")
        with open(stored, "r+b") as handle:
            handle.seek(3 * MiB)
            handle.write(b"\x00evil\x00")

        # WHEN it is pulled
        with pytest.raises(DigestMismatch) as caught:
            pull_image(client, "safety/tampered", "v1", tmp_path / "out", options=PullOptions(chunk_size=2 * MiB))

    # THEN the pull names the digest it expected, and nothing is left under the final or partial names
    assert caught.value.expected == digest_of(data)
    assert not (tmp_path / "out" / "disk.img").exists()
    assert not list((tmp_path / "out").glob("disk.img*"))


def test_a_manifest_altered_in_storage_is_rejected(server: RunningServer, tmp_path: Path) -> None:
    # GIVEN an image pulled by digest, whose stored manifest is then rewritten
    (tmp_path / "disk.img").write_bytes(os.urandom(4096))
    with RegistryClient.connect(server.url) as client:
        digest = push_image(client, "safety/manifest", "v1", [tmp_path / "disk.img"]).digest
        stored = server.storage / paths.manifest_key("safety/manifest", digest)
        document = json.loads(stored.read_text())
        document["layers"][0]["size"] = 1
        stored.write_text(json.dumps(document))

        # WHEN it is pulled by that digest
        with pytest.raises(DigestMismatch):
            pull_image(client, "safety/manifest", digest, tmp_path / "out")

    # THEN nothing was written
    assert not (tmp_path / "out" / "manifest.json").exists()


# -- authentication ------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    """A registry that requires tokens, and the directory holding the key that signs them."""
    keys = tmp_path_factory.mktemp("keys")
    made = run_vmregistry("keygen", "-dir", str(keys), "-bits", "2048", cwd=keys)
    assert made.returncode == 0, made.stderr
    running = start_server(tmp_path_factory.mktemp("auth-server"), "-auth-public-key", str(keys / "auth.pub"))
    yield running, keys
    stop_server(running)


def test_a_pull_only_token_cannot_push_and_is_told_which_scope_is_missing(
    auth_server: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    # GIVEN a token that grants only pull on the repository
    server, keys = auth_server
    token = mint(keys, "repository:safety/auth:pull")
    (tmp_path / "disk.img").write_bytes(os.urandom(4096))

    # WHEN it is used to push
    with RegistryClient.connect(server.url, token=token) as client, pytest.raises(RegistryAPIError) as caught:
        push_image(client, "safety/auth", "v1", [tmp_path / "disk.img"])

    # THEN the registry refused, and the message names the push scope and what to do
    assert caught.value.status in (401, 403)
    assert "repository:safety/auth:pull,push" in str(caught.value)
    assert "what to do:" in str(caught.value)


def test_tokens_are_used_for_the_registry_and_never_sent_to_storage(
    auth_server: tuple[RunningServer, Path], tmp_path: Path
) -> None:
    # GIVEN an image pushed with a push token (a 6 MiB disk goes through presigned URLs)
    server, keys = auth_server
    data = os.urandom(6 * MiB)
    (tmp_path / "disk.img").write_bytes(data)
    pusher = mint(keys, "repository:safety/tokens:pull,push")
    with RegistryClient.connect(server.url, token=pusher) as client:
        push_image(client, "safety/tokens", "v1", [tmp_path / "disk.img"])

    # WHEN it is pulled by the CLI with a pull token from the environment, and listed with one from the file
    puller = mint(keys, "repository:safety/tokens:pull")
    registry = server.url.removeprefix("http://")
    pulled = run_vmregistry(
        "pull", f"{registry}/safety/tokens:v1", "-o", "out", cwd=tmp_path, env={"VMREGISTRY_TOKEN": puller}
    )
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({"registries": {registry: {"token": puller}}}))
    listed = run_vmregistry(
        "tags", f"{registry}/safety/tokens", cwd=tmp_path, env={"VMREGISTRY_CREDENTIALS": str(credentials)}
    )

    # THEN both work
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "out" / "disk.img").read_bytes() == data
    assert listed.stdout.split() == ["v1"]


def test_no_token_gets_a_401_that_names_the_scope(auth_server: tuple[RunningServer, Path], tmp_path: Path) -> None:
    # GIVEN no token anywhere
    server, _ = auth_server

    # WHEN the CLI lists tags
    listed = run_vmregistry("tags", f"{server.url.removeprefix('http://')}/safety/none", cwd=tmp_path)

    # THEN it exits 1 explaining the 401, the scope asked for, and where tokens come from
    assert listed.returncode == 1
    assert "UNAUTHORIZED (401)" in listed.stderr
    assert "repository:safety/none:pull" in listed.stderr
    assert "VMREGISTRY_TOKEN" in listed.stderr


# -- references, hints, retries --------------------------------------------------------


def test_plain_http_to_a_remote_host_needs_insecure() -> None:
    # GIVEN / WHEN / THEN: loopback may use http, other hosts only with --insecure
    assert parse_reference("localhost:8080/vm:1")[0].registry.base_url == "http://localhost:8080"
    assert parse_reference("registry.example.com/vm:1")[0].registry.base_url == "https://registry.example.com"
    with pytest.raises(UsageError, match="--insecure"):
        parse_reference("http://registry.example.com/vm:1")
    insecure = parse_reference("http://registry.example.com/vm:1", insecure=True)
    assert insecure[0].registry.base_url == "http://registry.example.com"


def test_api_gateway_stage_paths_are_readings_of_the_url() -> None:
    # GIVEN an API Gateway URL with a stage, and a repository of two components
    readings = parse_reference("https://abc.execute-api.eu-west-1.amazonaws.com/prod/team/vm@sha256:" + "a" * 64)

    # THEN the one-segment stage is tried first, then no base path
    assert [(r.registry.base_url, r.repository) for r in readings][:2] == [
        ("https://abc.execute-api.eu-west-1.amazonaws.com/prod", "team/vm"),
        ("https://abc.execute-api.eu-west-1.amazonaws.com", "prod/team/vm"),
    ]
    assert readings[0].digest == "sha256:" + "a" * 64


def test_the_base_path_is_found_by_asking_the_registry(server: RunningServer) -> None:
    # GIVEN a URL whose first path segment could be a base path but is part of the repository
    client, ref = RegistryClient.for_reference(f"{server.url}/safety/probe:v1")

    # THEN the registry answered /v1/ only without a base path
    with client:
        assert (client.registry.base_url, ref.repository, ref.tag) == (server.url, "safety/probe", "v1")


def test_every_registry_error_code_has_a_hint() -> None:
    # GIVEN the server's table of codes / THEN the client explains each of them
    assert set(ERROR_CODES) <= set(HINTS)


def test_transient_failures_are_retried_with_backoff_and_client_errors_are_not() -> None:
    # GIVEN an operation that fails twice with a 503 and a dropped connection, then succeeds
    outcomes: list[Exception | str] = [
        RegistryAPIError(503, "UNAVAILABLE", "storage down"),
        TransientError("connection reset"),
        "ok",
    ]
    delays: list[float] = []

    def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    # WHEN it runs with retries
    result = with_retries(flaky, retries=5, backoff=0.5, sleep=delays.append)

    # THEN it succeeded on the third attempt, waiting longer each time
    assert result == "ok"
    assert len(delays) == 2
    assert delays[0] <= 0.5 <= delays[1]

    # AND a 404 is final at once
    attempts = []

    def missing() -> str:
        attempts.append(1)
        raise RegistryAPIError(404, "BLOB_UNKNOWN", "no such blob")

    with pytest.raises(RegistryAPIError):
        with_retries(missing, retries=5, sleep=delays.append)
    assert len(attempts) == 1


def test_a_registry_that_is_not_running_fails_at_once_with_what_to_do(tmp_path: Path) -> None:
    # GIVEN a port nothing listens on (a server started and stopped)
    stopped = start_server(tmp_path)
    stop_server(stopped)

    # WHEN the CLI pulls from it, with the default five retries
    started = time.monotonic()
    pulled = run_vmregistry("pull", f"{stopped.url.removeprefix('http://')}/safety/down:v1", cwd=tmp_path)
    elapsed = time.monotonic() - started

    # THEN it fails within a couple of seconds (not 13.5 s of silent retries), asks whether the registry
    # runs there, and shows no raw exception
    assert pulled.returncode == 1
    assert elapsed < 5
    assert f"is the registry running at {stopped.url}?" in pulled.stderr
    assert "ConnectionRefusedError" not in pulled.stderr
