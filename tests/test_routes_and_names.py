"""The route table and the name grammar: the two things every request passes through first."""

from __future__ import annotations

import pytest
from vmregistry.errors import ERROR_CODES, RegistryError
from vmregistry.httprange import parse_range
from vmregistry.names import parse_digest, parse_name, parse_reference, parse_tag
from vmregistry.routes import ROUTES, find_route

DIGEST = "sha256:" + "a" * 64
UUID = "12345678-1234-4234-8234-123456789abc"


@pytest.mark.parametrize(
    ("method", "path", "operation", "params"),
    [
        ("GET", "/v1/", "version_check", {}),
        ("GET", "/v1/_catalog", "catalog_list", {}),
        ("GET", "/v1/a/tags/list", "tags_list", {"name": "a"}),
        ("GET", "/v1/a/b/c/tags/list", "tags_list", {"name": "a/b/c"}),
        ("HEAD", f"/v1/a/b/blobs/{DIGEST}", "blob_head", {"name": "a/b", "digest": DIGEST}),
        ("POST", "/v1/a/b/blobs/uploads/", "upload_start", {"name": "a/b"}),
        ("POST", "/v1/a/b/blobs/uploads", "upload_start", {"name": "a/b"}),
        ("PATCH", f"/v1/a/blobs/uploads/{UUID}", "upload_patch", {"name": "a", "uuid": UUID}),
        ("PUT", f"/v1/a/blobs/uploads/{UUID}", "upload_complete", {"name": "a", "uuid": UUID}),
        ("PUT", f"/v1/a/blobs/{DIGEST}", "blob_put", {"name": "a", "digest": DIGEST}),
        # A repository whose components look like keywords still routes by the path's tail.
        ("GET", "/v1/blobs/manifests/manifests/v1", "manifest_get", {"name": "blobs/manifests", "reference": "v1"}),
        ("GET", f"/v1/x/blobs/uploads/blobs/{DIGEST}", "blob_get", {"name": "x/blobs/uploads", "digest": DIGEST}),
    ],
)
def test_paths_route_to_one_operation(method: str, path: str, operation: str, params: dict[str, str]) -> None:
    found = find_route(method, path)
    assert found
    route, got = found
    assert route.operation == operation
    assert got == params
    others = [r.operation for r in ROUTES if r.method == method and r.match(path) is not None]
    assert others == [operation], "exactly one route serves a method and path"


def test_reserved_components_are_explained() -> None:
    with pytest.raises(RegistryError) as caught:
        parse_name("team/blobs")
    assert "blobs" in caught.value.message
    assert "path segments" in caught.value.message


def test_unknown_path_and_wrong_method() -> None:
    assert find_route("GET", "/v1/a/unknown") is None
    assert find_route("POST", "/v1/_catalog") is False


def test_route_table_is_consistent() -> None:
    keys = [(r.method, r.template) for r in ROUTES]
    assert len(keys) == len(set(keys))
    # one route per operation and API: a /v2 twin shares its /v1 route's function and action
    assert len({(r.operation, r.api) for r in ROUTES}) == len(ROUTES)
    for route in ROUTES:
        twins = [r for r in ROUTES if r.operation == route.operation]
        assert {r.action for r in twins} == {route.action}
        assert {r.method for r in twins} == {route.method}
    for route in ROUTES:
        # reads never write, deletes are the only routes allowed to remove blobs or manifests
        if route.action == "pull":
            assert route.grants <= {"read"}
        assert route.resource(2).count("{name") == (2 if route.has_name else 0)


@pytest.mark.parametrize("name", ["a", "a/b", "a-b/c.d/e__f", "a0/1", "x" * 255, "a--b", "blobs/x", "tags", "a/blob"])
def test_valid_names(name: str) -> None:
    assert parse_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "a/",
        "/a",
        "a//b",
        "a/../b",
        "..",
        "a_",
        "_a",
        "a.-b",
        "x" * 256,
        "é",
        "a\nb",
        "a b",
        "a/B",
        "team/blobs",
        "a/manifests/b",
        "x/tags",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_name(name)
    assert caught.value.code == "NAME_INVALID"


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A" * 128, "1"])
def test_valid_tags(tag: str) -> None:
    assert parse_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-x", ".x", "A" * 129, "a/b", "a:b", "manifest.json", "ü"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(RegistryError):
        parse_reference(tag) if ":" in tag else parse_tag(tag)


@pytest.mark.parametrize(
    ("digest", "fragment"),
    [
        ("md5:" + "a" * 32, "'md5'"),
        ("sha512:" + "a" * 64, "128"),
        ("sha256:" + "A" * 64, "lowercase"),
        ("sha256:abc", "64"),
        ("abc", "sha256"),
    ],
)
def test_invalid_digests_say_why(digest: str, fragment: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_digest(digest)
    assert caught.value.code == "DIGEST_INVALID"
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=-100", 10, (0, 9)),
        ("bytes=5-2", 10, None),
        ("bytes=0-1,3-4", 10, None),
        ("items=0-1", 10, None),
    ],
)
def test_ranges(header: str | None, size: int, span: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == span


def test_unsatisfiable_range() -> None:
    with pytest.raises(RegistryError) as caught:
        parse_range("bytes=10-", 10)
    assert caught.value.status == 416


def test_error_table_statuses() -> None:
    assert all(400 <= e.status < 600 for e in ERROR_CODES.values())
    client = [c for c, e in ERROR_CODES.items() if e.status >= 500]
    assert sorted(client) == ["INTERNAL", "STORAGE_FULL", "UNAVAILABLE"]
    with pytest.raises(ValueError, match="unknown"):
        RegistryError("NOT_A_CODE")
