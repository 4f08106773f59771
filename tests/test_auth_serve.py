"""Authentication end to end: ``vmregistry serve`` with ``auth.pub``, over real HTTP.

The server process finds ``auth.pub`` in its working directory, runs the same
authorizer code through the same event shapes API Gateway uses, and answers
401/403 with JSON error bodies and a ``WWW-Authenticate`` challenge.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from vmregistry import mediatypes
from vmregistry.auth import ACTIONS, AccessSet, Verifier, load_public_key
from vmregistry.routes import ROUTES

from tests.authkit import AUDIENCE, CASES, ISSUER, Case, Keys
from tests.conftest import VMREGISTRY, RunningServer, start_server, stop_server
from tests.httpclient import Reply, request
from tests.registry_flows import digest_of, make_manifest


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys.generate()


@pytest.fixture(scope="module")
def secured(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server started in a directory holding auth.pub, with issuer and audience required."""
    workdir = tmp_path_factory.mktemp("secured")
    (workdir / "auth.pub").write_bytes(keys.public_pem)
    running = start_server(workdir, "-auth-issuer", ISSUER, "-auth-audience", AUDIENCE)
    yield running
    stop_server(running)


def call(
    server: RunningServer,
    method: str,
    path: str,
    authorization: str | None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Reply:
    sent = dict(headers or {})
    if authorization is not None:
        sent["Authorization"] = authorization
    path, _, inline_query = path.partition("?")
    query = query or inline_query
    target = quote(path, safe="/:") + (f"?{query}" if query else "")
    return request(method, server.url + target, body, sent)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_request_is_refused_over_http(secured: RunningServer, keys: Keys, case: Case) -> None:
    # GIVEN a hostile or broken request WHEN it reaches the local server
    body = b"{}" if case.method in ("PUT", "POST", "PATCH") else None
    reply = call(secured, case.method, case.path, case.authorization(keys), body, query=case.query)
    # THEN it gets exactly the expected 4xx, with a JSON error body naming the code
    assert reply.status == case.expect, reply.body
    assert reply.error_codes == ["UNAUTHORIZED" if case.expect == 401 else "DENIED"]
    challenge = reply.header("WWW-Authenticate") or ""
    assert challenge.startswith('Bearer realm="vmregistry",service="vmregistry"')
    if case.path == "/v1/team/app/tags/list":
        assert 'scope="repository:team/app:pull"' in challenge


def test_unauthenticated_version_check_gets_the_challenge(secured: RunningServer) -> None:
    # GIVEN no token WHEN a client probes /v1/ THEN 401 and a challenge without a scope (Docker's login probe)
    reply = call(secured, "GET", "/v1/", None)
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == 'Bearer realm="vmregistry",service="vmregistry"'


@dataclass
class Step:
    operation: str
    method: str
    path: Callable[[], str]
    expect: int
    body: bytes | None = None
    headers: dict[str, str] | None = None


def test_every_operation_works_with_exactly_its_action(secured: RunningServer, keys: Keys) -> None:
    """The positive matrix, over HTTP: each /v1 operation with exactly the action it needs, and with one less."""
    repo = "team/app"
    config, disk = b'{"os": "linux"}', b"disk image bytes"
    config_digest, disk_digest = digest_of(config), digest_of(disk)
    manifest = make_manifest((config_digest, len(config)), [(disk_digest, len(disk))])
    sessions: dict[str, str] = {}

    def start(key: str) -> Callable[[], str]:
        return lambda: f"/v1/{repo}/blobs/uploads/"

    def session(key: str) -> Callable[[], str]:
        return lambda: sessions[key]

    steps = [
        Step("version_check", "GET", lambda: "/v1/", 200),
        Step("blob_put", "PUT", lambda: f"/v1/{repo}/blobs/{config_digest}", 201, config),
        Step("upload_start", "POST", start("disk"), 202),
        Step("upload_status", "GET", session("disk"), 200),
        Step("upload_patch", "PATCH", session("disk"), 202, disk),
        Step("upload_complete", "PUT", lambda: f"{sessions['disk']}?digest={disk_digest}", 201),
        Step("upload_cancel", "DELETE", session("spare"), 204),
        Step("blob_head", "HEAD", lambda: f"/v1/{repo}/blobs/{disk_digest}", 200),
        Step("blob_get", "GET", lambda: f"/v1/{repo}/blobs/{disk_digest}", 307),
        Step(
            "manifest_put",
            "PUT",
            lambda: f"/v1/{repo}/manifests/v1",
            201,
            manifest,
            {"Content-Type": mediatypes.MANIFEST},
        ),
        Step("manifest_head", "HEAD", lambda: f"/v1/{repo}/manifests/v1", 200),
        Step("manifest_get", "GET", lambda: f"/v1/{repo}/manifests/v1", 200),
        Step("tags_list", "GET", lambda: f"/v1/{repo}/tags/list", 200),
        Step("catalog_list", "GET", lambda: "/v1/_catalog", 200),
        Step("manifest_delete", "DELETE", lambda: f"/v1/{repo}/manifests/v1", 202),
        Step("blob_delete", "DELETE", lambda: f"/v1/{repo}/blobs/{config_digest}", 202),
    ]
    v1 = [r for r in ROUTES if r.api == "v1"]  # /v2's matrix: tests/test_v2_auth.py
    assert sorted(s.operation for s in steps) == sorted(r.operation for r in v1)
    by_operation = {r.operation: r for r in v1}
    for step in steps:
        route = by_operation[step.operation]
        if step.operation == "upload_cancel":
            opened = call(secured, "POST", f"/v1/{repo}/blobs/uploads/", keys.bearer(f"repository:{repo}:push"))
            sessions["spare"] = opened.json()["location"]
        path = step.path()
        if route.action is None:
            exact, others = keys.bearer(), None
        else:
            exact = keys.bearer(f"repository:{repo}:{route.action}")
            others = keys.bearer(f"repository:{repo}:{','.join(a for a in ACTIONS if a != route.action)}")
        # GIVEN every action but the needed one THEN 403, and nothing happens
        if others is not None:
            refused = call(secured, step.method, path, others, step.body, step.headers)
            assert refused.status == 403, (step.operation, refused.body)
        # GIVEN exactly the needed action THEN the operation succeeds
        reply = call(secured, step.method, path, exact, step.body, step.headers)
        assert reply.status == step.expect, (step.operation, reply.body)
        if step.operation == "upload_start":
            sessions["disk"] = reply.json()["location"]
        if step.operation == "blob_get":
            # The presigned data-plane URL is authorized by its own signature: no token needed.
            location = reply.header("Location") or ""
            fetched = request("GET", location if location.startswith("http") else secured.url + location)
            assert fetched.status == 200
            assert fetched.body == disk


def test_catalog_shows_only_pullable_repositories(secured: RunningServer, keys: Keys) -> None:
    # GIVEN repositories pushed by an admin token
    admin = keys.bearer("repository:**:*")
    for name in ("cat/a", "cat/b/deep", "catevil/x"):
        config = name.encode()
        digest = digest_of(config)
        assert call(secured, "PUT", f"/v1/{name}/blobs/{digest}", admin, config).status == 201
        put = call(
            secured,
            "PUT",
            f"/v1/{name}/manifests/v1",
            admin,
            make_manifest((digest, len(config)), []),
            {"Content-Type": mediatypes.MANIFEST},
        )
        assert put.status == 201, put.body

    def listed(token: str) -> list[str]:
        reply = call(secured, "GET", "/v1/_catalog", token, query="n=1000")
        assert reply.status == 200, reply.body
        return [r for r in reply.json()["repositories"] if r.startswith("cat")]

    # WHEN tokens with narrower scopes list the catalog THEN each sees only what it may pull
    assert listed(admin) == ["cat/a", "cat/b/deep", "catevil/x"]
    assert listed(keys.bearer("repository:cat/*:pull")) == ["cat/a"]
    assert listed(keys.bearer("repository:cat/**:pull")) == ["cat/a", "cat/b/deep"]
    assert listed(keys.bearer("repository:cat/*:push,delete")) == []


# -- start-up: where the key comes from -------------------------------------------------------------


def test_without_auth_pub_auth_is_disabled_with_a_warning(tmp_path: Path) -> None:
    # GIVEN a working directory without auth.pub
    running = start_server(tmp_path)
    try:
        # THEN the server warns loudly and serves without tokens
        assert "authentication is DISABLED" in running.logs()
        assert request("GET", running.url + "/v1/").status == 200
    finally:
        stop_server(running)


@pytest.mark.parametrize(
    ("where", "content"),
    [
        ("./auth.pub", "this is not a PEM key\n"),
        ("flag", None),  # a typo in -auth-public-key: no such file
        ("env", None),  # the same typo in VMREGISTRY_AUTH_PUBLIC_KEY
        ("flag", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
    ],
)
def test_unusable_key_stops_the_server_instead_of_serving_open(tmp_path: Path, where: str, content: str | None) -> None:
    # GIVEN a public key the operator named (or left as ./auth.pub) that cannot verify tokens
    key = tmp_path / ("auth.pub" if where == "./auth.pub" else "named.pem")
    if content is not None:
        key.write_text(content)
    args = ["-auth-public-key", str(key) + ("" if content else ".typo")] if where == "flag" else []
    env = {"VMREGISTRY_AUTH_PUBLIC_KEY": str(key) + ".typo"} if where == "env" else {}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")} | env
    # WHEN the server starts
    done = subprocess.run(
        [VMREGISTRY, "serve", "-port", "0", "-fs-path", str(tmp_path / "storage"), *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # THEN it refuses to start (exit 2), saying which key and what to do, and never serves open
    assert done.returncode == 2, done.stderr
    assert "cannot use the public key" in done.stderr
    assert "to serve without authentication" in done.stderr
    assert "listening on" not in done.stderr + done.stdout


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    return subprocess.run([VMREGISTRY, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


def test_keygen_token_and_a_key_named_by_flag(tmp_path: Path) -> None:
    # GIVEN a key pair made by `vmregistry keygen` in a directory of its own
    keydir = tmp_path / "keys"
    made = run_cli(tmp_path, "keygen", "-dir", str(keydir), "-bits", "2048")
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((keydir / "auth.key").stat().st_mode) == 0o600
    # keygen refuses to overwrite keys
    assert run_cli(tmp_path, "keygen", "-dir", str(keydir)).returncode == 1
    # AND a token minted by `vmregistry token`
    minted = run_cli(
        tmp_path,
        "token",
        "-key",
        str(keydir / "auth.key"),
        "-scope",
        "repository:lab/*:pull",
        "-subject",
        "carol",
        "-lifetime",
        "120",
    )
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    identity = Verifier(load_public_key(str(keydir / "auth.pub"))).verify(token)
    assert identity.subject == "carol"
    assert identity.access == AccessSet.from_claims({"scope": "repository:lab/*:pull"})
    # a malformed scope is refused at minting time
    assert run_cli(tmp_path, "token", "-key", str(keydir / "auth.key"), "-scope", "lab/*:pull").returncode == 2
    # WHEN a server is started with -auth-public-key naming the key (no auth.pub in its directory)
    running = start_server(tmp_path, "-auth-public-key", str(keydir / "auth.pub"))
    try:
        # THEN the token works within its scope and nowhere else
        assert request("GET", running.url + "/v1/").status == 401
        ok = request("GET", running.url + "/v1/lab/vm/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert ok.status == 404  # authorized; the repository is simply empty
        assert ok.error_codes == ["NAME_UNKNOWN"]
        other = request("GET", running.url + "/v1/prod/vm/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert other.status == 403
    finally:
        stop_server(running)


def test_mount_needs_pull_on_the_source_repository(secured: RunningServer, keys: Keys) -> None:
    # GIVEN a blob in mnt/src, pushed by an admin
    data = b"mountable bytes"
    digest = digest_of(data)
    assert call(secured, "PUT", f"/v1/mnt/src/blobs/{digest}", keys.bearer("repository:**:*"), data).status == 201
    mount = f"/v1/mnt/dst/blobs/uploads/?mount={digest}&from=mnt/src"
    # WHEN a token that may push mnt/dst but not pull mnt/src asks to mount THEN no mount: a fresh session
    refused = call(secured, "POST", mount, keys.bearer("repository:mnt/dst:push"))
    assert refused.status == 202, refused.body
    assert call(secured, "HEAD", f"/v1/mnt/dst/blobs/{digest}", keys.bearer("repository:mnt/dst:pull")).status == 404
    # WHEN the token may also pull mnt/src THEN the blob is mounted
    mounted = call(secured, "POST", mount, keys.bearer("repository:mnt/dst:push", "repository:mnt/src:pull"))
    assert mounted.status == 201, mounted.body
    assert call(secured, "HEAD", f"/v1/mnt/dst/blobs/{digest}", keys.bearer("repository:mnt/dst:pull")).status == 200
