"""Request framing a proxy could read differently is refused, and a short body is the client's mistake (issue 12).

Two ``Content-Length`` headers that disagree, ``Transfer-Encoding`` beside
``Content-Length``, or a transfer coding other than ``chunked`` let a proxy in
front and this server split the stream into different requests (request
smuggling): each is a 400 and the connection is closed. A body shorter than
its ``Content-Length`` is a 400, not a 413. ``Expect: 100-continue`` is
answered with the authorizer's 401 or 403 when the token is missing or short.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.authkit import Keys
from tests.conftest import RunningServer, start_server, stop_server
from tests.httpclient import request
from tests.rawhttp import Exchange

REPO = "framing/vm"
DATA = b"framed bytes"
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture(scope="module")
def framing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("framing"), "-workers", "1")
    yield running
    stop_server(running)


def _answer(
    server: RunningServer, method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, str, bool]:
    """Send raw bytes; the status, the error code, and whether the server then closed the connection."""
    with Exchange(server.url) as exchange:
        exchange.send_head(method, path, headers)
        exchange.send(body)
        status, _, reply = exchange.read_reply()
        if status < 400:
            return status, "", False  # a keep-alive connection stays open for the next request
        return status, json.loads(reply)["errors"][0]["code"], exchange.closed_by_server()


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Length", str(len(DATA))), ("Content-Length", "5")],
        [("Content-Length", "5"), ("Content-Length", str(len(DATA)))],
        [("Transfer-Encoding", "chunked"), ("Content-Length", str(len(DATA)))],
        [("Transfer-Encoding", "gzip, chunked")],
        [("Transfer-Encoding", "identity")],
        [("Content-Length", f"+{len(DATA)}")],
    ],
    ids=["lengths disagree", "lengths disagree, shorter first", "both framings", "gzip", "identity", "signed length"],
)
def test_ambiguous_framing_is_a_400_and_the_connection_ends(
    framing: RunningServer, headers: list[tuple[str, str]]
) -> None:
    # WHEN a blob PUT arrives with framing that two parsers could read two ways
    status, code, closed = _answer(framing, "PUT", f"/v1/{REPO}/blobs/{DIGEST}", headers, DATA)
    # THEN it is refused before anything is stored, and the connection carries no further request
    assert (status, code, closed) == (400, "BAD_REQUEST", True)
    assert request("HEAD", f"{framing.url}/v1/{REPO}/blobs/{DIGEST}").status == 404


def test_repeated_equal_lengths_are_one_length(framing: RunningServer) -> None:
    headers = [("Content-Length", str(len(DATA))), ("Content-Length", str(len(DATA)))]
    status, _, _ = _answer(framing, "PUT", f"/v1/{REPO}/blobs/{DIGEST}", headers, DATA)
    assert status == 201
    assert request("DELETE", f"{framing.url}/v1/{REPO}/blobs/{DIGEST}").status == 202


@pytest.mark.parametrize(
    "path", [f"/v1/{REPO}/manifests/latest", f"/v1/{REPO}/blobs/{DIGEST}"], ids=["small route", "streamed route"]
)
def test_a_body_shorter_than_its_length_is_a_400(framing: RunningServer, path: str) -> None:
    # GIVEN a request that declares 1000 bytes and sends 10 before ending its side of the connection
    with Exchange(framing.url) as exchange:
        exchange.send_head("PUT", path, [("Content-Length", "1000")])
        exchange.send(b"0123456789")
        exchange.finish_sending()
        status, _, body = exchange.read_reply()
    # THEN the client is told its body is incomplete (400), not that it is too large
    assert status == 400, body
    assert json.loads(body)["errors"][0]["code"] == "BAD_REQUEST"
    assert not any(p.is_file() for p in (framing.storage / ".tmp").iterdir())


def test_expect_100_continue_gets_the_authorizers_refusal_first(tmp_path: Path) -> None:
    keys = Keys.generate()
    (tmp_path / "auth.pub").write_bytes(keys.public_pem)
    server = start_server(tmp_path, "-workers", "1")
    try:
        path = f"/v1/{REPO}/blobs/{DIGEST}"
        for authorization, expected in (
            (None, (401, "UNAUTHORIZED")),
            (keys.bearer(f"repository:{REPO}:pull"), (403, "DENIED")),
        ):
            extra = [("Authorization", authorization)] if authorization else []
            with Exchange(server.url) as exchange:
                # WHEN a 1 GiB PUT announces itself with Expect: 100-continue, without a token that may push
                exchange.send_head("PUT", path, [("Content-Length", str(1 << 30)), ("Expect", "100-continue"), *extra])
                status, _, body = exchange.read_reply()
                # THEN the refusal comes instead of 100 Continue, and the connection ends there
                assert (status, json.loads(body)["errors"][0]["code"]) == expected
                assert exchange.closed_by_server()
        # AND a token that grants push is told to go on
        with Exchange(server.url) as exchange:
            exchange.send_head(
                "PUT",
                path,
                [
                    ("Content-Length", str(len(DATA))),
                    ("Expect", "100-continue"),
                    ("Authorization", keys.bearer(f"repository:{REPO}:push,pull")),
                ],
            )
            assert exchange.read_reply()[0] == 100
            exchange.send(DATA)
            assert exchange.read_reply()[0] == 201
    finally:
        stop_server(server)


def test_a_bug_behind_the_http_layer_is_a_500_not_a_dropped_connection(tmp_path: Path) -> None:
    from vmregistry.config import Settings
    from vmregistry.local.app import LocalServer
    from vmregistry.local.http import Exchange as Incoming
    from vmregistry.local.http import Reply

    # GIVEN a real local server whose application fails in a way nobody planned for (an injected fault)
    server = LocalServer(Settings(fs_path=str(tmp_path / "storage")), port=0)

    def broken(exchange: Incoming) -> Reply:
        raise FileNotFoundError("injected: a directory vanished")

    server.httpd.app = broken
    server.start()
    try:
        # WHEN a request arrives THEN the client still gets an answer: 500 with the registry's JSON error
        reply = request("GET", f"{server.url}/v1/")
        assert reply.status == 500
        assert reply.error_codes == ["INTERNAL"]
        # AND the server keeps serving
        server.httpd.app = server.gateway
        assert request("GET", f"{server.url}/v1/").status == 200
    finally:
        server.shutdown()
