"""Auth Servers other than ours: one that speaks only Docker's GET, and challenges and scopes as docker writes them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmregistry.client import Login, RegistryClient, TokenSource, push_image

from tests.client_login.helpers import PASSWORD, TokenServer
from tests.conftest import start_server, stop_server


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
