"""Each Lambda handler, invoked in-process with the event API Gateway (REST, proxy) sends.

These are the handlers as Lambda runs them: ``lambda_handler(event, context)``
and the response dict API Gateway turns into HTTP. Events come from
:func:`vmregistry.local.events.build_event`, the adapter the local server uses.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vmregistry import mediatypes, runtime
from vmregistry.api import Response
from vmregistry.config import Settings
from vmregistry.local.events import LambdaContext, build_event
from vmregistry.registry import Registry
from vmregistry.routes import ROUTES, find_route
from vmregistry.storage import StorageUnavailable
from vmregistry.storage.filesystem import FilesystemStorage
from vmregistry.storage.signing import UrlSigner

from tests.registry_flows import digest_of, make_manifest


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("VMREGISTRY_AUTH", "none")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    storage = FilesystemStorage(tmp_path, UrlSigner("http://data.test"))
    registry = Registry(storage, Settings(fs_path=str(tmp_path)))
    runtime.configure(registry)
    yield registry
    runtime.reset()


def invoke(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, query: str = ""
) -> dict[str, Any]:
    found = find_route(method, path)
    assert found, f"no route for {method} {path}"
    route, params = found
    event = build_event(route, params, method, path, query, (headers or {}).items(), body)
    handler = importlib.import_module(route.module).lambda_handler
    response: dict[str, Any] = handler(event, LambdaContext(route.operation, "req-1"))
    return response


def body_of(response: dict[str, Any]) -> bytes:
    raw = response.get("body") or ""
    return base64.b64decode(raw) if response["isBase64Encoded"] else raw.encode()


def header(response: dict[str, Any], name: str) -> str | None:
    values = response.get("multiValueHeaders", {}).get(name)
    return values[-1] if values else None


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.operation)
def test_every_route_has_a_handler_module(route: Any) -> None:
    module = importlib.import_module(route.module)
    assert callable(module.lambda_handler)
    assert route in module.endpoint.routes


def test_blob_put_head_get(registry: Registry) -> None:
    # GIVEN a blob sent in a base64-encoded body, as API Gateway delivers binary media
    data = b"\x00\x01binary\xff" * 100
    digest = digest_of(data)
    put = invoke("PUT", f"/v1/team/vm/blobs/{digest}", data)
    assert put["statusCode"] == 201
    assert header(put, "Location") == f"/v1/team/vm/blobs/{digest}"
    # WHEN HEAD and GET run THEN size/digest are reported and GET redirects to the data plane
    head = invoke("HEAD", f"/v1/team/vm/blobs/{digest}")
    assert head["statusCode"] == 200
    assert header(head, "Content-Length") == str(len(data))
    got = invoke("GET", f"/v1/team/vm/blobs/{digest}")
    assert got["statusCode"] == 307
    location = header(got, "Location")
    assert location is not None
    assert location.startswith("http://data.test/_data/get?")


def test_blob_served_inline_when_backend_cannot_redirect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a backend without a data plane (presign_get returns None)
    monkeypatch.setenv("VMREGISTRY_AUTH", "none")
    runtime.configure(Registry(FilesystemStorage(tmp_path), Settings()))
    try:
        data = bytes(range(256)) * 10
        digest = digest_of(data)
        assert invoke("PUT", f"/v1/a/blobs/{digest}", data)["statusCode"] == 201
        # WHEN the blob is fetched THEN the handler returns the bytes, honouring Range
        whole = invoke("GET", f"/v1/a/blobs/{digest}")
        assert whole["statusCode"] == 200
        assert body_of(whole) == data
        part = invoke("GET", f"/v1/a/blobs/{digest}", headers={"Range": "bytes=10-19"})
        assert part["statusCode"] == 206
        assert body_of(part) == data[10:20]
        beyond = invoke("GET", f"/v1/a/blobs/{digest}", headers={"Range": "bytes=99999-"})
        assert beyond["statusCode"] == 416
        assert header(beyond, "Content-Range") == f"bytes */{len(data)}"
    finally:
        runtime.reset()


def test_manifest_round_trip_is_byte_exact(registry: Registry) -> None:
    config = b'{"cpus": 4}'
    invoke("PUT", f"/v1/r/blobs/{digest_of(config)}", config)
    body = make_manifest((digest_of(config), len(config)), [])
    put = invoke("PUT", "/v1/r/manifests/latest", body, {"Content-Type": mediatypes.MANIFEST})
    assert put["statusCode"] == 201
    got = invoke("GET", "/v1/r/manifests/latest")
    assert got["statusCode"] == 200
    assert body_of(got) == body
    assert header(got, "Content-Type") == mediatypes.MANIFEST
    assert header(got, "Docker-Content-Digest") == digest_of(body)


def test_errors_are_json_with_the_table_status(registry: Registry) -> None:
    response = invoke("GET", "/v1/Bad/tags/list")
    assert response["statusCode"] == 400
    assert header(response, "Content-Type") == "application/json"
    assert json.loads(body_of(response))["errors"][0]["code"] == "NAME_INVALID"


def test_locations_keep_the_stage_prefix(registry: Registry) -> None:
    # GIVEN a request through a default API Gateway endpoint, whose URL carries the stage
    data = b"staged"
    digest = digest_of(data)
    found = find_route("PUT", f"/v1/x/blobs/{digest}")
    assert found
    route, params = found
    event = build_event(route, params, "PUT", f"/v1/x/blobs/{digest}", body=data)
    event["requestContext"]["path"] = f"/prod/v1/x/blobs/{digest}"
    # WHEN the handler answers THEN Location is a path the client can use as is
    response = importlib.import_module(route.module).lambda_handler(event, LambdaContext("blob_put", "r"))
    assert header(response, "Location") == f"/prod/v1/x/blobs/{digest}"


def test_storage_outage_is_503_not_a_traceback(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*args: object, **kwargs: object) -> bytes:
        raise StorageUnavailable("connection refused by the storage endpoint")

    monkeypatch.setattr(registry.storage, "read", unavailable)
    response = invoke("HEAD", f"/v1/r/blobs/{digest_of(b'x')}")
    assert response["statusCode"] == 503
    response = invoke("GET", "/v1/r/manifests/latest")
    assert json.loads(body_of(response))["errors"][0]["code"] == "UNAVAILABLE"


def test_unexpected_failure_is_a_json_500(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("bug")

    monkeypatch.setattr(registry.storage, "read", broken)
    response = invoke("GET", "/v1/r/manifests/latest")
    assert response["statusCode"] == 500
    assert json.loads(body_of(response))["errors"][0]["code"] == "INTERNAL"


def test_a_request_for_another_route_is_not_found(registry: Registry) -> None:
    # GIVEN the events of two other routes: another method on this path, and another path
    digest = digest_of(b"x")
    head = importlib.import_module("vmregistry_functions.blob_head").lambda_handler
    found = find_route("GET", f"/v1/r/blobs/{digest}")
    other = find_route("GET", "/v1/r/tags/list")
    assert found
    assert other
    wrong_method = build_event(*found, "GET", f"/v1/r/blobs/{digest}")
    wrong_path = build_event(*other, "HEAD", "/v1/r/tags/list")
    for event in (wrong_method, wrong_path):
        # WHEN blob_head's function receives it (a stack wired wrong, or a test harness)
        response = head(event, LambdaContext("blob_head", "req-1"))
        # THEN it answers NOT_FOUND and names the routes it serves (one operation, both APIs)
        assert response["statusCode"] == 404
        error = json.loads(body_of(response))["errors"][0]
        assert error["code"] == "NOT_FOUND"
        assert error["message"] == "this function serves HEAD /v1/{name}/blobs/{digest}, HEAD /v2/{name}/blobs/{digest}"


def test_responses_have_the_rest_proxy_shape() -> None:
    # GIVEN a text and a binary response, as handlers build them
    text = Response(201, "application/json", "{}", {"Location": "/v1/a", "Content-Type": "text/x"})
    binary = Response(200, body=b"\x00\xff", headers={"Content-Length": "2"})
    # WHEN they are turned into what the function returns THEN API Gateway gets the REST proxy
    # fields: every header as a list, an explicit Content-Type beside the shorthand kept,
    # and bytes base64-encoded
    assert text.to_proxy() == {
        "statusCode": 201,
        "body": "{}",
        "isBase64Encoded": False,
        "multiValueHeaders": {"Location": ["/v1/a"], "Content-Type": ["text/x"]},
    }
    assert binary.to_proxy() == {
        "statusCode": 200,
        "body": "AP8=",
        "isBase64Encoded": True,
        "multiValueHeaders": {"Content-Length": ["2"]},
    }
    assert Response(204).to_proxy()["body"] is None


def test_metrics_are_published_per_operation(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN metrics switched on, as in Lambda
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    # WHEN two invocations run, one failing with a client error
    invoke("GET", "/v1/", b"")
    invoke("GET", "/v1/Bad/tags/list")
    # THEN each prints one EMF document with its operation and outcome
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [d["operation"] for d in documents] == ["version_check", "tags_list"]
    assert documents[0]["Requests"] == [1.0] or documents[0]["Requests"] == 1.0
    assert "ClientErrors" in documents[1]
    assert "ClientErrors" not in documents[0]


def test_event_shape_matches_api_gateway(registry: Registry) -> None:
    # GIVEN the event for a nested repository
    found = find_route("GET", "/v1/a/b/c/manifests/v1")
    assert found
    route, params = found
    event = build_event(route, params, "GET", "/v1/a/b/c/manifests/v1", "n=1&n=2", [("Accept", "x"), ("Accept", "y")])
    # THEN the resource and path parameters are those the stack declares for depth 3
    assert event["resource"] == "/v1/{name1}/{name2}/{name3}/manifests/{reference}"
    assert event["pathParameters"] == {"name1": "a", "name2": "b", "name3": "c", "reference": "v1"}
    assert event["multiValueHeaders"]["Accept"] == ["x", "y"]
    assert event["headers"]["Accept"] == "y"
    assert event["queryStringParameters"] == {"n": "2"}
    assert event["multiValueQueryStringParameters"] == {"n": ["1", "2"]}
    assert event["requestContext"]["resourcePath"] == event["resource"]
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


def _loaded_after_importing(modules: list[str], watched: list[str], env: dict[str, str] | None = None) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded after importing ``modules``."""
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(','.join(m for m in {watched!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return [m for m in result.stdout.strip().split(",") if m]


def test_api_handlers_do_not_load_what_they_never_use() -> None:
    # GIVEN a fresh interpreter importing every API handler (as a cold Lambda would, one each)
    loaded = _loaded_after_importing([route.module for route in ROUTES], ["jwt", "cryptography", "boto3"])
    # THEN token verification (the authorizer's job) and the S3 client (chosen at first use) stay unloaded
    assert loaded == []


@pytest.mark.parametrize(
    ("operation", "unused"),
    [
        ("blob_head", ["uploads", "manifests", "listing"]),
        ("blob_get", ["uploads", "manifests", "listing"]),
        ("manifest_get", ["uploads"]),  # listing: tag pages belong to the manifests module
        ("tags_list", ["uploads"]),
        ("version_check", ["blobs", "uploads", "manifests", "listing"]),
    ],
)
def test_a_handler_loads_only_the_domain_modules_it_uses(operation: str, unused: list[str]) -> None:
    # GIVEN a fresh interpreter importing one handler, as its cold Lambda function does
    loaded = _loaded_after_importing(
        [f"vmregistry_functions.{operation}"], [f"vmregistry.registry.{m}" for m in unused]
    )
    # THEN the parts of the domain layer it never calls stayed unloaded (cold-start time)
    assert loaded == []


def test_handlers_in_lambda_without_the_sdk_load_no_resolver_and_no_xray() -> None:
    # GIVEN a fresh interpreter in a deployed function's environment with tracing "active" or "off"
    env = os.environ | {"AWS_LAMBDA_FUNCTION_NAME": "vmregistry-test", "POWERTOOLS_TRACE_DISABLED": "true"}
    # WHEN every API handler is imported
    loaded = _loaded_after_importing(
        [route.module for route in ROUTES], ["aws_lambda_powertools.event_handler", "aws_xray_sdk"], env
    )
    # THEN neither Powertools' resolver (each function answers its one route itself) nor the
    # X-Ray SDK (only tracing "sdk" needs it) was loaded: together they were ~0.4 s of cold start
    assert loaded == []


@pytest.mark.parametrize(
    ("environment", "traced"),
    [
        ({"AWS_LAMBDA_FUNCTION_NAME": "blob_head"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "blob_head", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({}, False),
    ],
    ids=["lambda", "lambda-tracing-off", "local"],
)
def test_the_xray_sdk_loads_only_where_traces_are_sent(environment: dict[str, str], traced: bool) -> None:
    # GIVEN a fresh interpreter in Lambda's environment or outside it
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_LAMBDA_FUNCTION_NAME", "POWERTOOLS_TRACE_DISABLED")}
    probe = (
        "import sys, vmregistry_functions.blob_head as h\n"
        "from vmregistry.api.observability import tracer\n"
        "print('aws_xray_sdk' in sys.modules, type(tracer).__name__)\n"
    )
    # WHEN a handler is imported
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env | environment, capture_output=True, text=True, check=True
    )
    # THEN the X-Ray SDK (half a second of imports) is there only when Powertools would trace
    assert result.stdout.split() == (["True", "Tracer"] if traced else ["False", "NoTracer"])


def test_in_aws_a_blob_put_takes_the_largest_body_lambda_can_receive(registry: Registry) -> None:
    # GIVEN a blob as large as API Gateway can hand a function: base64-encoded inside Lambda's 6 MB payload
    data = os.urandom(4_400_000)
    digest = digest_of(data)
    path = f"/v1/team/vm/blobs/{digest}"
    found = find_route("PUT", path)
    assert found
    event = build_event(found[0], found[1], "PUT", path, body=data)
    assert len(json.dumps(event)) < 6 * 1024 * 1024
    # WHEN the function runs THEN it stores it whole (no lower limit of its own: bigger bodies never reach it,
    # API Gateway answers them 413 itself)
    response = importlib.import_module(found[0].module).lambda_handler(event, LambdaContext("blob_put", "req-1"))
    assert response["statusCode"] == 201, body_of(response)
    assert header(invoke("HEAD", path), "Content-Length") == str(len(data))
    # AND an upload chunk of that size is stored as a part
    started = json.loads(body_of(invoke("POST", "/v1/team/vm/blobs/uploads/")))
    patched = invoke("PATCH", started["location"], data)
    assert patched["statusCode"] == 202, body_of(patched)
    assert json.loads(body_of(patched))["parts"][0]["size"] == len(data)
