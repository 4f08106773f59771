"""Where logins are kept: docker's ``config.json`` and credential helpers, and the credentials file's permissions.

Docker's ``auths``, ``credHelpers`` and ``credsStore`` are read as docker
writes them; ``vmregistry login`` can keep its login in a helper; a
credentials file others can read is used, with a warning and its remedy.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.client_login.helpers import PASSWORD, TokenServer, cli_with_stdin

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
    anonymous = cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert anonymous.returncode == 1
    assert "UNAUTHORIZED (401)" in anonymous.stderr

    # GIVEN docker's config with alice's password in auths (keyed by URL, as docker writes some)
    # WHEN the catalog is listed THEN that login is used
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    (docker / "config.json").write_text(json.dumps({"auths": {f"http://{registry}": {"auth": auth}}}))
    listed = cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert listed.returncode == 0, listed.stderr

    # GIVEN a credHelpers entry naming a helper on PATH that holds alice's login
    path_env, log = _helper(
        tmp_path, "vmtest", {registry: {"ServerURL": registry, "Username": "alice", "Secret": PASSWORD}}
    )
    (docker / "config.json").write_text(json.dumps({"credHelpers": {registry: "vmtest"}, "auths": {}}))
    (tmp_path / "disk.img").write_bytes(os.urandom(4096))

    # WHEN an image is pushed THEN the helper was asked for the registry, and the push worked
    pushed = cli_with_stdin(tmp_path, "", "push", f"{registry}/team/helper:v1", "-disk", "disk.img", env=env | path_env)
    assert pushed.returncode == 0, pushed.stderr
    assert f"get {registry}" in log.read_text().splitlines()

    # GIVEN credsStore (no per-registry entry) WHEN tags are listed THEN the same helper serves
    (docker / "config.json").write_text(json.dumps({"credsStore": "vmtest"}))
    listed = cli_with_stdin(tmp_path, "", "tags", f"{registry}/team/helper", env=env | path_env)
    assert listed.stdout.split() == ["v1"], listed.stderr


def test_login_into_a_credential_helper(token_server: TokenServer, tmp_path: Path) -> None:
    registry = token_server.registry
    credentials = tmp_path / "credentials.json"
    path_env, log = _helper(tmp_path, "vault")
    env = path_env | {"VMREGISTRY_CREDENTIALS": str(credentials)}

    # WHEN alice logs in keeping the login in a helper
    logged = cli_with_stdin(
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
    listed = cli_with_stdin(tmp_path, "", "catalog", registry, env=env)
    assert listed.returncode == 0, listed.stderr
    assert cli_with_stdin(tmp_path, "", "logout", registry, env=env).returncode == 0
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
    listed = cli_with_stdin(tmp_path, "", "catalog", token_server.registry, env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"the credentials file {credentials} is readable by others (mode 0644)" in listed.stderr
    assert f"chmod 600 {credentials}" in listed.stderr

    # AND once it is 0600, silence
    credentials.chmod(0o600)
    quiet = cli_with_stdin(tmp_path, "", "catalog", token_server.registry, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "readable by others" not in quiet.stderr
