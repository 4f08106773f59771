"""``vmregistry login`` and what it keeps, tokens renewed during a long push, and a login from the environment.

A login keeps a refresh token in a file only its owner can read, never the
password; push, tags and catalog then work with no token given, until logout.
A push that outlives its token renews it with exactly the push's scopes.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from vmregistry.client import Login, PushOptions, RegistryClient, TokenSource, push_image

from tests.client_login.helpers import LIFETIME, PASSWORD, MiB, TokenServer, claims, cli_with_stdin


def test_login_keeps_a_refresh_token_then_push_and_tags_work_until_logout(
    token_server: TokenServer, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials.json"
    env = {"VMREGISTRY_CREDENTIALS": str(credentials)}
    registry = token_server.registry

    # WHEN alice logs in
    logged = cli_with_stdin(tmp_path, f"{PASSWORD}\n", "login", registry, "-u", "alice", "-password-stdin", env=env)

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
    pushed = cli_with_stdin(tmp_path, "", "push", f"{registry}/team/login:v1", "-disk", "disk.img", env=env)
    assert pushed.returncode == 0, pushed.stderr
    listed = cli_with_stdin(tmp_path, "", "tags", f"{registry}/team/login", env=env)
    assert listed.stdout.split() == ["v1"]
    catalog = cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert "team/login" in catalog.stdout.split()  # the catalog scope grants her pull patterns

    # WHEN she logs out THEN the entry is gone and the registry asks for credentials again
    out = cli_with_stdin(tmp_path, "", "logout", registry, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(credentials.read_text())["registries"] == {}
    refused = cli_with_stdin(tmp_path, "", "tags", f"{registry}/team/login", env=env)
    assert refused.returncode == 1
    assert "UNAUTHORIZED (401)" in refused.stderr


def test_login_with_a_wrong_password_stores_nothing(token_server: TokenServer, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    env = {"VMREGISTRY_CREDENTIALS": str(credentials)}
    logged = cli_with_stdin(
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
    assert claims(held[0])["exp"] < time.time()
    assert held[-1] != held[0]
    # AND every token carried exactly what the push needs, nothing else alice may do
    assert {claims(token)["scope"] for token in held} == {"repository:team/renewed:pull,push"}


def test_a_login_from_the_environment_for_ci(token_server: TokenServer, tmp_path: Path) -> None:
    # GIVEN alice's username and password in the environment, as a CI job would have them
    registry = token_server.registry
    env = {"VMREGISTRY_USERNAME": "alice", "VMREGISTRY_PASSWORD": PASSWORD}

    # WHEN the catalog is listed THEN the login is used, with no file written
    listed = cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert listed.returncode == 0, listed.stderr
    assert not (tmp_path / "no-credentials.json").exists()

    # AND with VMREGISTRY_LOGIN_HOST naming another registry, it is kept for that one only
    elsewhere = cli_with_stdin(
        tmp_path, "", "catalog", registry, env=env | {"VMREGISTRY_LOGIN_HOST": "registry.example.com"}
    )
    assert elsewhere.returncode == 1
    assert "UNAUTHORIZED (401)" in elsewhere.stderr
