"""The package's token server, started once, and each test's own credentials, caches and docker config."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli import run_vmregistry
from tests.client_login.helpers import LIFETIME, PASSWORD, TokenServer, cli_with_stdin
from tests.conftest import start_server, stop_server


@pytest.fixture(scope="package")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """alice may pull and push team/* and do anything below lab/; bob may do nothing."""
    home = tmp_path_factory.mktemp("token-server")
    made = run_vmregistry("keygen", "-dir", str(home), "-bits", "2048", cwd=home)
    assert made.returncode == 0, made.stderr
    users = home / "users.json"
    for name, scopes in (("alice", ["repository:team/*:pull,push", "repository:lab/**:*"]), ("bob", [])):
        args = [arg for scope in scopes for arg in ("-scope", scope)]
        added = cli_with_stdin(home, f"{PASSWORD}\n", "add-user", "-users", str(users), "-name", name, *args)
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


@pytest.fixture(autouse=True)
def _isolated(isolated_client: None) -> None:
    """Every test logs in as a new user of the client would."""
