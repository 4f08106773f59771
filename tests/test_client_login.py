"""Logins: the development token endpoint, ``vmregistry login``, renewal mid-push, docker's config and helpers.

One registry runs for the module with ``-token-users`` (the opt-in token
endpoint of local mode), tokens that live 2 seconds and no leeway for clock
skew, so a token that expired is refused for real. Keys are real RSA keys,
tokens real RS256 JWTs; the credential helper is a real program on ``PATH``
that speaks docker's helper protocol and logs what it was asked.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from vmregistry.client import Login, PushOptions, RegistryClient, TokenSource, push_image

from tests.cli import run_vmregistry
from tests.conftest import VMREGISTRY, RunningServer, start_server, stop_server
from tests.httpclient import Reply, request

MiB = 1024 * 1024
PASSWORD = "wonderland"
LIFETIME = 2


@dataclass
class TokenServer:
    server: RunningServer
    users: Path

    @property
    def registry(self) -> str:
        return self.server.url.removeprefix("http://")

    @property
    def realm(self) -> str:
        return self.server.url + "/auth/token"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    home = tmp_path_factory.mktemp("token-server")
    made = run_vmregistry("keygen", "-dir", str(home), "-bits", "2048", cwd=home)
    assert made.returncode == 0, made.stderr
    users = home / "users.json"
    for name, scopes in (("alice", ["repository:team/*:pull,push", "repository:lab/**:*"]), ("bob", [])):
        args = [arg for scope in scopes for arg in ("-scope", scope)]
        added = _cli_with_stdin(home, f"{PASSWORD}\n", "add-user", "-users", str(users), "-name", name, *args)
        assert added.returncode == 0, added.stderr
    running = start_server(
        home,
        "-auth-public-key",
        "auth.pub",
        "-token-users",
        str(users),
        "-token-key",
        "auth.key",
        "-token-lifetime",
        str(LIFETIME),
        env={"VMREGISTRY_AUTH_LEEWAY": "0"},
    )
    yield TokenServer(running, users)
    stop_server(running)


def _cli_with_stdin(
    cwd: Path, stdin: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VMREGISTRY_")}
    environ |= {"VMREGISTRY_CACHE_DIR": str(cwd / "cli-cache"), "DOCKER_CONFIG": str(cwd / "no-docker")}
    environ.setdefault("VMREGISTRY_CREDENTIALS", str(cwd / "no-credentials.json"))
    environ.update(env or {})
    return subprocess.run(
        [VMREGISTRY, *args], cwd=cwd, env=environ, input=stdin, capture_output=True, text=True, timeout=120
    )


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VMREGISTRY_TOKEN", raising=False)
    monkeypatch.setenv("VMREGISTRY_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    monkeypatch.setenv("VMREGISTRY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))


# -- the development token endpoint ----------------------------------------------------


def test_the_challenge_names_the_token_endpoint(token_server: TokenServer) -> None:
    reply = request("GET", token_server.server.url + "/v1/")
    assert reply.status == 401
    assert f'realm="{token_server.realm}"' in (reply.header("WWW-Authenticate") or "")


def test_docker_get_grants_only_what_was_asked_and_is_allowed(token_server: TokenServer) -> None:
    # GIVEN alice, who may pull and push team/*, asking for pull and delete on team/app and pull on other/x
    query = urllib.parse.urlencode(
        [
            ("service", "vmregistry"),
            ("scope", "repository:team/app:pull,delete"),
            ("scope", "repository:other/x:pull"),
            ("offline_token", "true"),
        ]
    )
    # WHEN she asks with Docker's GET and Basic credentials
    reply = request("GET", f"{token_server.realm}?{query}", headers={"Authorization": _basic("alice", PASSWORD)})

    # THEN the token grants the intersection only, lives as configured, and a refresh token comes along
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["token"] == answer["access_token"]
    assert _claims(answer["token"])["scope"] == "repository:team/app:pull"
    assert answer["expires_in"] == LIFETIME
    assert answer["refresh_token"].startswith("vmr1.")
    assert reply.header("Cache-Control") == "no-store"

    # AND a wrong password or an unknown user gets a Basic challenge, and no token
    for user, password in (("alice", "guess"), ("mallory", PASSWORD)):
        refused = request("GET", f"{token_server.realm}?{query}", headers={"Authorization": _basic(user, password)})
        assert refused.status == 401
        assert (refused.header("WWW-Authenticate") or "").startswith("Basic ")
        assert b"token" not in refused.body.replace(b"token service", b"")


def test_oauth2_password_and_refresh_grants(token_server: TokenServer) -> None:
    def post(form: dict[str, str]) -> Reply:
        body = urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return request("POST", token_server.realm, body=body, headers=headers)

    # GIVEN a password grant asking for a refresh token
    first = post(
        {
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "scope": "repository:lab/a/b:*",
            "service": "vmregistry",
            "client_id": "test",
            "access_type": "offline",
        }
    )
    assert first.status == 200, first.body
    assert _claims(first.json()["access_token"])["scope"] == "repository:lab/a/b:delete,pull,push"
    refresh = first.json()["refresh_token"]

    # WHEN the refresh token is traded for a new access token THEN it works
    second = post({"grant_type": "refresh_token", "refresh_token": refresh, "scope": "repository:team/app:pull"})
    assert second.status == 200, second.body
    assert _claims(second.json()["access_token"])["scope"] == "repository:team/app:pull"

    # AND a tampered refresh token, an unknown grant and wrong passwords are OAuth2 errors
    tampered = refresh[:-4] + ("AAAA" if not refresh.endswith("AAAA") else "BBBB")
    assert post({"grant_type": "refresh_token", "refresh_token": tampered}).json()["error"] == "invalid_grant"
    assert post({"grant_type": "password", "username": "alice", "password": "x"}).json()["error"] == "invalid_grant"
    assert post({"grant_type": "client_credentials"}).json()["error"] == "unsupported_grant_type"

    # AND the registry never takes a refresh token for an access token
    as_bearer = request(
        "GET", token_server.server.url + "/v1/team/app/tags/list", headers={"Authorization": f"Bearer {refresh}"}
    )
    assert as_bearer.status == 401


# -- vmregistry login, and tokens renewed during a push ----------------------------------


def test_login_keeps_a_refresh_token_then_push_and_tags_work_until_logout(
    token_server: TokenServer, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials.json"
    env = {"VMREGISTRY_CREDENTIALS": str(credentials)}
    registry = token_server.registry

    # WHEN alice logs in
    logged = _cli_with_stdin(tmp_path, f"{PASSWORD}\n", "login", registry, "-u", "alice", "-password-stdin", env=env)

    # THEN a refresh token is kept, in a file only she can read, and not her password
    assert logged.returncode == 0, logged.stderr
    assert "Login Succeeded" in logged.stderr
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    entry = json.loads(credentials.read_text())["registries"][registry]
    assert entry["username"] == "alice"
    assert entry["refreshToken"].startswith("vmr1.")
    assert PASSWORD not in credentials.read_text()

    # AND push and tags work with no token given
    (tmp_path / "disk.img").write_bytes(os.urandom(64 * 1024))
    pushed = _cli_with_stdin(tmp_path, "", "push", f"{registry}/team/login:v1", "-disk", "disk.img", env=env)
    assert pushed.returncode == 0, pushed.stderr
    listed = _cli_with_stdin(tmp_path, "", "tags", f"{registry}/team/login", env=env)
    assert listed.stdout.split() == ["v1"]
    catalog = _cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert "team/login" in catalog.stdout.split()  # the catalog scope grants her pull patterns

    # WHEN she logs out THEN the entry is gone and the registry asks for credentials again
    out = _cli_with_stdin(tmp_path, "", "logout", registry, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(credentials.read_text())["registries"] == {}
    refused = _cli_with_stdin(tmp_path, "", "tags", f"{registry}/team/login", env=env)
    assert refused.returncode == 1
    assert "UNAUTHORIZED (401)" in refused.stderr


def test_login_with_a_wrong_password_stores_nothing(token_server: TokenServer, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    env = {"VMREGISTRY_CREDENTIALS": str(credentials)}
    logged = _cli_with_stdin(
        tmp_path, "nope\n", "login", token_server.registry, "-u", "alice", "-password-stdin", env=env
    )
    assert logged.returncode == 1
    assert "refused the username or password of 'alice'" in logged.stderr
    assert not credentials.exists()


def test_a_push_that_outlives_its_token_renews_it_with_exactly_the_push_scopes(
    token_server: TokenServer, tmp_path: Path
) -> None:
    # GIVEN a login (tokens live 2 s) and a four-part push that pauses a second after each part
    tokens = TokenSource(login=Login("alice", password=PASSWORD))
    held: list[str] = []

    def slowly(digest: str, number: int) -> None:
        held.append(tokens.current or "")
        time.sleep(1.0)

    (tmp_path / "disk.img").write_bytes(os.urandom(20 * MiB))
    started = time.monotonic()

    # WHEN it is pushed
    with RegistryClient.connect(token_server.server.url, token=tokens) as client:
        result = push_image(
            client,
            "team/renewed",
            "v1",
            [tmp_path / "disk.img"],
            options=PushOptions(part_size=5 * MiB, concurrency=1, on_part=slowly),
        )
    held.append(tokens.current or "")  # the one that completed the upload and put the manifest

    # THEN it succeeded although it took longer than a token lives, because tokens were renewed:
    # the first had expired before the push ended, and the last one is another
    assert time.monotonic() - started > 2 * LIFETIME
    assert result.digest
    assert tokens.fetched >= 2
    assert _claims(held[0])["exp"] < time.time()
    assert held[-1] != held[0]
    # AND every token carried exactly what the push needs, nothing else alice may do
    assert {_claims(token)["scope"] for token in held} == {"repository:team/renewed:pull,push"}


# -- docker's config.json and credential helpers ---------------------------------------------

_HELPER = """#!{python}
import json, sys
from pathlib import Path
store = Path({store!r})
action = sys.argv[1]
data = sys.stdin.read()
with open({log!r}, "a") as log:
    log.write(action + " " + (data if action != "store" else json.loads(data)["Username"]) + "\\n")
saved = json.loads(store.read_text()) if store.exists() else {{}}
if action == "get":
    if data not in saved:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(saved[data]))
elif action == "store":
    entry = json.loads(data)
    saved[entry["ServerURL"]] = entry
    store.write_text(json.dumps(saved))
elif action == "erase":
    saved.pop(data, None)
    store.write_text(json.dumps(saved))
"""


def _helper(tmp_path: Path, name: str, saved: dict[str, Any] | None = None) -> tuple[dict[str, str], Path]:
    """``docker-credential-<name>`` on a PATH of its own; returns the environment and its log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    store, log = tmp_path / f"{name}-store.json", tmp_path / f"{name}.log"
    if saved is not None:
        store.write_text(json.dumps(saved))
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(_HELPER.format(python=os.path.realpath(sys.executable), store=str(store), log=str(log)))
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def test_docker_auths_and_credential_helpers_are_used(token_server: TokenServer, tmp_path: Path) -> None:
    registry = token_server.registry
    docker = tmp_path / "docker"
    docker.mkdir()
    env = {"DOCKER_CONFIG": str(docker)}
    anonymous = _cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert anonymous.returncode == 1
    assert "UNAUTHORIZED (401)" in anonymous.stderr

    # GIVEN docker's config with alice's password in auths (keyed by URL, as docker writes some)
    # WHEN the catalog is listed THEN that login is used
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    (docker / "config.json").write_text(json.dumps({"auths": {f"http://{registry}": {"auth": auth}}}))
    listed = _cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert listed.returncode == 0, listed.stderr

    # GIVEN a credHelpers entry naming a helper on PATH that holds alice's login
    path_env, log = _helper(
        tmp_path, "vmtest", {registry: {"ServerURL": registry, "Username": "alice", "Secret": PASSWORD}}
    )
    (docker / "config.json").write_text(json.dumps({"credHelpers": {registry: "vmtest"}, "auths": {}}))
    (tmp_path / "disk.img").write_bytes(os.urandom(4096))

    # WHEN an image is pushed THEN the helper was asked for the registry, and the push worked
    pushed = _cli_with_stdin(
        tmp_path, "", "push", f"{registry}/team/helper:v1", "-disk", "disk.img", env=env | path_env
    )
    assert pushed.returncode == 0, pushed.stderr
    assert f"get {registry}" in log.read_text().splitlines()

    # GIVEN credsStore (no per-registry entry) WHEN tags are listed THEN the same helper serves
    (docker / "config.json").write_text(json.dumps({"credsStore": "vmtest"}))
    listed = _cli_with_stdin(tmp_path, "", "tags", f"{registry}/team/helper", env=env | path_env)
    assert listed.stdout.split() == ["v1"], listed.stderr


def test_login_into_a_credential_helper(token_server: TokenServer, tmp_path: Path) -> None:
    registry = token_server.registry
    credentials = tmp_path / "credentials.json"
    path_env, log = _helper(tmp_path, "vault")
    env = path_env | {"VMREGISTRY_CREDENTIALS": str(credentials)}

    # WHEN alice logs in keeping the login in a helper
    logged = _cli_with_stdin(
        tmp_path,
        f"{PASSWORD}\n",
        "login",
        registry,
        "-u",
        "alice",
        "-password-stdin",
        "-credential-helper",
        "vault",
        env=env,
    )

    # THEN the helper stored a refresh token (docker's "<token>" user), and the file only names the helper
    assert logged.returncode == 0, logged.stderr
    assert "store <token>" in log.read_text().splitlines()
    assert json.loads(credentials.read_text())["registries"][registry] == {"credentialHelper": "vault"}
    assert PASSWORD not in (tmp_path / "vault-store.json").read_text()

    # AND later commands get the login from it; logout erases it there
    listed = _cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert listed.returncode == 0, listed.stderr
    assert _cli_with_stdin(tmp_path, "", "logout", registry, env=env).returncode == 0
    assert f"erase {registry}" in log.read_text().splitlines()


# -- the credentials file's permissions -----------------------------------------------------


def test_a_credentials_file_readable_by_others_is_warned_about(token_server: TokenServer, tmp_path: Path) -> None:
    # GIVEN a credentials file with alice's login, readable by everyone
    credentials = tmp_path / "credentials.json"
    credentials.write_text(
        json.dumps({"registries": {token_server.registry: {"username": "alice", "password": PASSWORD}}})
    )
    credentials.chmod(0o644)
    env = {"VMREGISTRY_CREDENTIALS": str(credentials)}

    # WHEN the CLI uses it THEN it works, warning as ssh does, with the remedy
    listed = _cli_with_stdin(tmp_path, "", "catalog", token_server.registry, env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"the credentials file {credentials} is readable by others (mode 0644)" in listed.stderr
    assert f"chmod 600 {credentials}" in listed.stderr

    # AND once it is 0600, silence
    credentials.chmod(0o600)
    quiet = _cli_with_stdin(tmp_path, "", "catalog", token_server.registry, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "readable by others" not in quiet.stderr


# -- an Auth Server that speaks only Docker's GET form ---------------------------------------------


@pytest.fixture
def get_only_realm(token_server: TokenServer) -> Iterator[str]:
    """The token service behind a server that answers POST with 405, as older Auth Servers do."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from vmregistry.local.token_service import TokenService

    home = token_server.users.parent
    service = TokenService((home / "auth.key").read_bytes(), token_server.users, service="vmregistry", lifetime=60)
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(f"GET {self.path}")
            path, _, query = self.path.partition("?")
            self._answer(*service("GET", path, query, dict(self.headers.items()), b""))

        def do_POST(self) -> None:
            asked.append("POST")
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer(405, [("Allow", "GET")], b"")

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    realm = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    workdir = home / f"get-only-{time.monotonic_ns()}"
    workdir.mkdir()
    server = start_server(
        workdir,
        "-auth-public-key",
        str(home / "auth.pub"),
        env={"VMREGISTRY_AUTH_REALM": realm},
    )
    try:
        yield server.url
    finally:
        stop_server(server)
        httpd.shutdown()
        httpd.server_close()
    assert "POST" in asked
    assert any(line.startswith("GET /token?service=vmregistry&scope=repository%3Ateam%2Fget%3Apull") for line in asked)


def test_a_realm_without_oauth2_is_asked_with_dockers_get(get_only_realm: str, tmp_path: Path) -> None:
    # GIVEN a login, and a registry whose Auth Server refuses the OAuth2 POST
    (tmp_path / "disk.img").write_bytes(os.urandom(4096))
    tokens = TokenSource(login=Login("alice", password=PASSWORD))

    # WHEN an image is pushed and its tags listed THEN the client fell back to GET with Basic credentials
    with RegistryClient.connect(get_only_realm, token=tokens) as client:
        push_image(client, "team/get", "v1", [tmp_path / "disk.img"])
        assert client.tags("team/get") == ["v1"]
    assert tokens.fetched >= 1


@pytest.mark.parametrize(
    ("header", "params"),
    [
        (
            'Bearer realm="https://auth.example.com/token",service="registry",scope="repository:a/b:pull,push"',
            {"realm": "https://auth.example.com/token", "service": "registry", "scope": "repository:a/b:pull,push"},
        ),
        ('bearer realm="x", error="invalid_token"', {"realm": "x", "error": "invalid_token"}),
        ('Bearer realm="q\\"uoted",service=bare', {"realm": 'q"uoted', "service": "bare"}),
    ],
)
def test_challenges_are_parsed_as_docker_writes_them(header: str, params: dict[str, str]) -> None:
    from vmregistry.client._tokens import parse_challenge

    parsed = parse_challenge(header)
    assert parsed is not None
    assert parsed.params == params
    assert parse_challenge('Basic realm="x"') is None


def test_scopes_of_one_repository_are_merged() -> None:
    from vmregistry.client._tokens import merge_scopes

    merged = merge_scopes(["repository:a:pull", "repository:b:push", "repository:a:push", "repository:a:pull"])
    assert merged == ["repository:a:pull,push", "repository:b:push"]


def test_the_token_endpoint_refuses_to_start_with_a_key_the_server_does_not_verify(
    token_server: TokenServer, tmp_path: Path
) -> None:
    # GIVEN a second key pair, and the server's public key
    home = token_server.users.parent
    made = run_vmregistry("keygen", "-dir", str(tmp_path), "-bits", "2048", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    common = ["-token-users", str(token_server.users)]

    # WHEN serve is asked to sign with the other private key, or to issue tokens with auth off
    for extra, expected in (
        (
            ["-auth-public-key", str(home / "auth.pub"), "-token-key", str(tmp_path / "auth.key")],
            "not the private half",
        ),
        (["-token-key", str(home / "auth.key")], "needs authentication on"),
    ):
        workdir = tmp_path / f"serve-{len(extra)}-{expected.split()[0]}"
        workdir.mkdir()
        # THEN it stops at once, saying why (tokens it signs would never verify, or would not be needed)
        with pytest.raises(RuntimeError, match=expected):
            start_server(workdir, *common, *extra)


def test_a_single_process_server_serves_the_token_endpoint_too(token_server: TokenServer, tmp_path: Path) -> None:
    # GIVEN serve -workers 1 (no supervisor) with the token endpoint
    home = token_server.users.parent
    single = start_server(
        tmp_path,
        "-workers",
        "1",
        "-auth-public-key",
        str(home / "auth.pub"),
        "-token-users",
        str(token_server.users),
        "-token-key",
        str(home / "auth.key"),
    )
    try:
        # WHEN a client is challenged and logs in there THEN the realm is that server's, and the token works
        challenge = request("GET", single.url + "/v1/").header("WWW-Authenticate") or ""
        assert f'realm="{single.url}/auth/token"' in challenge
        tokens = TokenSource(login=Login("alice", password=PASSWORD))
        with RegistryClient.connect(single.url, token=tokens) as client:
            assert client.catalog() == []
        assert tokens.fetched == 1
    finally:
        stop_server(single)


def test_a_login_from_the_environment_for_ci(token_server: TokenServer, tmp_path: Path) -> None:
    # GIVEN alice's username and password in the environment, as a CI job would have them
    registry = token_server.registry
    env = {"VMREGISTRY_USERNAME": "alice", "VMREGISTRY_PASSWORD": PASSWORD}

    # WHEN the catalog is listed THEN the login is used, with no file written
    listed = _cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert listed.returncode == 0, listed.stderr
    assert not (tmp_path / "no-credentials.json").exists()

    # AND with VMREGISTRY_LOGIN_HOST naming another registry, it is kept for that one only
    elsewhere = _cli_with_stdin(
        tmp_path, "", "catalog", registry, env=env | {"VMREGISTRY_LOGIN_HOST": "registry.example.com"}
    )
    assert elsewhere.returncode == 1
    assert "UNAUTHORIZED (401)" in elsewhere.stderr
