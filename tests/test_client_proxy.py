"""The client behind a real forward proxy (tinyproxy on loopback): what goes through it, what bypasses it.

The registry under test serves its API at ``127.0.0.1:PORT`` and hands out
presigned data-plane URLs for ``localhost:PORT`` (``-public-url``), so the
API and storage are two origins, as API Gateway and S3 are. The proxy's own
log says which requests it relayed. The local data plane, like S3, refuses
any request that carries an ``Authorization`` header, so a push and a pull
that succeed through the proxy with a token also prove the token never went
to storage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vmregistry.client import (
    ClientError,
    ProxyConfig,
    PullOptions,
    PushOptions,
    RegistryClient,
    Unreachable,
    UsageError,
    pull_image,
    push_image,
)

from loopback.processes import free_port
from tests.cli import mint, run_vmregistry
from tests.conftest import RunningServer, start_server, stop_server
from tests.proxykit import TINYPROXY, Proxy, start_proxy
from tests.tlskit import serving_tls

MiB = 1024 * 1024
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def _isolated(isolated_client: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _need_tinyproxy() -> None:
    if not os.access(TINYPROXY, os.X_OK):
        pytest.skip("tinyproxy is missing: run `make proxy` (make test installs it)")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    _need_tinyproxy()
    running = start_proxy(tmp_path)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def split_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path, int]]:
    """A registry requiring tokens, its API on 127.0.0.1 and its storage URLs on localhost."""
    keys = tmp_path_factory.mktemp("keys")
    made = run_vmregistry("keygen", "-dir", str(keys), "-bits", "2048", cwd=keys)
    assert made.returncode == 0, made.stderr
    port = free_port()
    running = start_server(
        tmp_path_factory.mktemp("proxied"),
        "-port",
        str(port),
        "-workers",
        "2",
        "-public-url",
        f"http://localhost:{port}",
        "-auth-public-key",
        str(keys / "auth.pub"),
    )
    yield running, keys, port
    stop_server(running)


def _disk(path: Path, size: int = 12 * MiB) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _through(proxy: Proxy, fragment: str) -> list[str]:
    return [f"{method} {target}" for method, target in proxy.requests() if fragment in target]


def test_push_and_pull_go_through_the_proxy_and_the_token_stays_with_the_registry(
    split_server: tuple[RunningServer, Path, int], proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a proxy in HTTP_PROXY, and a token that may push and pull
    server, keys, port = split_server
    token = mint(keys, "repository:proxy/app:pull,push")
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    disk = _disk(tmp_path / "disk.img")

    # WHEN a three-part disk is pushed and pulled
    with RegistryClient.connect(server.url, token=token) as client:
        pushed = push_image(client, "proxy/app", "v1", [disk], options=PushOptions(part_size=5 * MiB))
        pull_image(client, "proxy/app", "v1", tmp_path / "out", options=PullOptions(chunk_size=4 * MiB))

    # THEN the bytes came back, and both the API calls and the storage transfers went through the proxy
    assert (tmp_path / "out" / "disk.img").read_bytes() == disk.read_bytes()
    assert _through(proxy, f"http://127.0.0.1:{port}/v1/proxy/app/blobs/uploads/")
    assert _through(proxy, f"http://127.0.0.1:{port}/v1/proxy/app/manifests/v1")
    assert len([r for r in _through(proxy, f"http://localhost:{port}/_data/part") if r.startswith("PUT")]) == 3
    assert len([r for r in _through(proxy, f"http://localhost:{port}/_data/get") if r.startswith("GET")]) >= 3
    # AND the token went nowhere but the registry: not in a URL, and storage (which refuses any
    # Authorization header) accepted every request
    assert not [target for _, target in proxy.requests() if token in target]
    assert pushed.digest


def test_no_proxy_sends_the_listed_hosts_direct(
    split_server: tuple[RunningServer, Path, int], proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, keys, port = split_server
    token = mint(keys, "repository:proxy/bypass:pull,push")
    disk = _disk(tmp_path / "disk.img", 6 * MiB)
    monkeypatch.setenv("http_proxy", proxy.url)

    # GIVEN storage's host in no_proxy WHEN an image is pushed and pulled
    monkeypatch.setenv("no_proxy", "example.com, localhost")
    with RegistryClient.connect(server.url, token=token) as client:
        push_image(client, "proxy/bypass", "v1", [disk])
        pull_image(client, "proxy/bypass", "v1", tmp_path / "out")
    # THEN the API went through the proxy and storage did not
    assert _through(proxy, f"127.0.0.1:{port}/v1/proxy/bypass/")
    assert not _through(proxy, "/_data/")

    # GIVEN the loopback block as a CIDR in NO_PROXY WHEN the image is pulled again
    monkeypatch.delenv("no_proxy")
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
    seen = len(proxy.requests())
    with RegistryClient.connect(server.url, token=token) as client:
        pull_image(client, "proxy/bypass", "v1", tmp_path / "again")
    # THEN the API (an address in the block) went direct, and storage (a name, not an address) did not
    later = [target for _, target in proxy.requests()[seen:]]
    assert later
    assert all(target.startswith(f"http://localhost:{port}/_data/") for target in later)

    # GIVEN NO_PROXY=* WHEN the tags are listed THEN nothing goes through the proxy
    monkeypatch.setenv("NO_PROXY", "*")
    seen = len(proxy.requests())
    with RegistryClient.connect(server.url, token=token) as client:
        assert client.tags("proxy/bypass") == ["v1"]
    assert proxy.requests()[seen:] == []


def test_proxy_credentials_come_from_the_url(
    split_server: tuple[RunningServer, Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a proxy that demands credentials
    _need_tinyproxy()
    server, keys, _ = split_server
    guarded = start_proxy(tmp_path, credentials=("alice", "s3cret"))
    token = mint(keys, "repository:proxy/creds:pull,push")
    try:
        # WHEN the client goes through it without them THEN it is told what the proxy wants and how to give it
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{guarded.port}")
        with RegistryClient.connect(server.url, token=token, retries=0) as client, pytest.raises(ClientError) as caught:
            client.tags("proxy/creds")
        assert "407" in str(caught.value)
        assert "USER:PASSWORD@" in str(caught.value)

        # WHEN they are in the URL THEN the push works, through the proxy
        monkeypatch.setenv("HTTP_PROXY", guarded.url)
        with RegistryClient.connect(server.url, token=token) as client:
            push_image(client, "proxy/creds", "v1", [_disk(tmp_path / "disk.img", 6 * MiB)])
        assert _through(guarded, "/_data/put")
    finally:
        guarded.stop()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A registry on https://127.0.0.1 (a throwaway CA), its data plane on the same origin."""
    with serving_tls(tmp_path) as registry:
        yield registry.url, registry.ca_file


def test_https_goes_through_a_connect_tunnel(
    tls_server: tuple[str, Path], proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an https registry and HTTPS_PROXY
    url, ca_file = tls_server
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    disk = _disk(tmp_path / "disk.img", 6 * MiB)

    # WHEN an image is pushed and pulled
    with RegistryClient.connect(url, ca_bundle=str(ca_file)) as client:
        push_image(client, "proxy/tls", "v1", [disk])
        pull_image(client, "proxy/tls", "v1", tmp_path / "out")

    # THEN it all went through CONNECT tunnels to the registry (the proxy saw no path, no header, no byte
    # in the clear), and the certificate checked was the registry's
    assert (tmp_path / "out" / "disk.img").read_bytes() == disk.read_bytes()
    requests = proxy.requests()
    assert requests
    assert {method for method, _ in requests} == {"CONNECT"}
    assert {target for _, target in requests} == {url.removeprefix("https://")}


def test_a_proxy_that_is_not_running_fails_at_once(
    split_server: tuple[RunningServer, Path, int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN HTTP_PROXY naming a port nothing listens on
    server, _, _ = split_server
    dead = free_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")

    # WHEN the CLI lists tags
    started = time.monotonic()
    listed = run_vmregistry(
        "tags", f"{server.url.removeprefix('http://')}/proxy/app", cwd=tmp_path, env=dict(os.environ)
    )

    # THEN it says at once that the proxy is not there, naming the variable it came from
    assert listed.returncode == 1
    assert time.monotonic() - started < 5
    assert f"cannot connect to the proxy http://127.0.0.1:{dead} (from HTTP_PROXY)" in listed.stderr
    with RegistryClient.connect(server.url) as client, pytest.raises(Unreachable):
        client.catalog()


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "proxied"),
    [
        ("", "registry.example.com", 443, True),
        ("example.com", "registry.example.com", 443, False),
        ("example.com", "example.com", 443, False),
        (".example.com", "registry.example.com", 443, False),
        ("*.example.com", "a.b.example.com", 443, False),
        ("example.com", "badexample.com", 443, True),
        ("example.com:8443", "registry.example.com", 443, True),
        ("example.com:8443", "registry.example.com", 8443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, False),
        ("10.0.0.0/8", "11.1.2.3", 443, True),
        ("10.0.0.0/8", "ten.example.com", 443, True),
        ("192.168.1.7", "192.168.1.7", 80, False),
        ("fd00::/8", "[fd12::1]", 443, False),
        ("[::1]:8080", "[::1]", 8080, False),
        ("a.test,b.test  c.test", "c.test", 443, False),
        ("*", "anything.example", 443, False),
        ("REGISTRY.Example.COM", "registry.example.com", 443, False),
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, proxied: bool) -> None:
    config = ProxyConfig.from_env({"HTTPS_PROXY": "proxy.internal:3128", "NO_PROXY": no_proxy})
    assert (config.proxy_for("https", host, port) is not None) == proxied


def test_proxy_variables_lowercase_first_and_credentials_decoded() -> None:
    config = ProxyConfig.from_env(
        {"https_proxy": "http://b%40ob:p%3Ass@low:3128", "HTTPS_PROXY": "http://up:1", "HTTP_PROXY": "plain:8080"}
    )
    assert config.https is not None
    assert config.https.netloc == "low:3128"
    assert config.https.headers() == {"Proxy-Authorization": "Basic YkBvYjpwOnNz"}  # base64 of b@ob:p:ss
    assert config.https.display == "http://low:3128"  # never the password
    assert config.http is not None
    assert (config.http.netloc, config.http.source) == ("plain:8080", "HTTP_PROXY")
    with pytest.raises(UsageError, match="only http:// proxies") as refused:
        ProxyConfig.from_env({"HTTPS_PROXY": "socks5://user:secret@proxy:1080"})
    assert "secret" not in str(refused.value)
