"""The development token endpoint: its challenge, Docker's GET and OAuth2's POST grants, and when serve refuses it.

A token grants only what was asked and the user may do, lives as configured
and comes with a refresh token the registry never takes for an access token;
a server with the endpoint starts only with a key pair it verifies, and a
single-process server serves the endpoint too.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from vmregistry.client import Login, RegistryClient, TokenSource

from tests.cli import run_vmregistry
from tests.client_login.helpers import LIFETIME, PASSWORD, TokenServer, basic, claims
from tests.conftest import start_server, stop_server
from tests.httpclient import Reply, request


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
    reply = request("GET", f"{token_server.realm}?{query}", headers={"Authorization": basic("alice", PASSWORD)})

    # THEN the token grants the intersection only, lives as configured, and a refresh token comes along
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["token"] == answer["access_token"]
    assert claims(answer["token"])["scope"] == "repository:team/app:pull"
    assert answer["expires_in"] == LIFETIME
    assert answer["refresh_token"].startswith("vmr1.")
    assert reply.header("Cache-Control") == "no-store"

    # AND a wrong password or an unknown user gets a Basic challenge, and no token
    for user, password in (("alice", "guess"), ("mallory", PASSWORD)):
        refused = request("GET", f"{token_server.realm}?{query}", headers={"Authorization": basic(user, password)})
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
    assert claims(first.json()["access_token"])["scope"] == "repository:lab/a/b:delete,pull,push"
    refresh = first.json()["refresh_token"]

    # WHEN the refresh token is traded for a new access token THEN it works
    second = post({"grant_type": "refresh_token", "refresh_token": refresh, "scope": "repository:team/app:pull"})
    assert second.status == 200, second.body
    assert claims(second.json()["access_token"])["scope"] == "repository:team/app:pull"

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
