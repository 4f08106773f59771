"""Auth Servers other than ours: one that speaks only Docker's GET, and challenges and scopes as docker writes them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmregistry.client import Login, RegistryClient, TokenSource, push_image

from tests.client_login.helpers import PASSWORD, TokenServer
from tests.conftest import start_server, stop_server
from tests.stubserver import Answer, serving


@pytest.fixture
def get_only_realm(token_server: TokenServer) -> Iterator[str]:
    """The token service behind a server that answers POST with 405, as older Auth Servers do."""
    from vmregistry.local.token_service import TokenService

    home = token_server.users.parent
    service = TokenService((home / "auth.key").read_bytes(), token_server.users, service="vmregistry", lifetime=60)
    asked: list[str] = []

    def answer(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        if method == "POST":
            asked.append("POST")
            return 405, [("Allow", "GET")], b""
        asked.append(f"GET {target}")
        path, _, query = target.partition("?")
        return service("GET", path, query, headers, b"")

    with serving(answer) as port:
        realm = f"http://127.0.0.1:{port}/token"
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
