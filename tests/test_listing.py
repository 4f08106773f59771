"""Listings that cost the page: catalog and tags pages read a sorted key range, not the registry.

Order and pagination through the HTTP API, the storage requests a page costs
on S3 (LocalStack, counted with botocore's own event hooks), the catalog kept
right under concurrent pushes and deletes (forced interleavings), and the
repair path (``vmregistry reindex``), which also migrates the first layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from vmregistry import mediatypes, paths
from vmregistry.digests import digest_of
from vmregistry.registry import Registry
from vmregistry.registry.manifests import tag_record
from vmregistry.registry.reindex import reindex
from vmregistry.storage import Storage
from vmregistry.storage.filesystem import FilesystemStorage

from tests.conftest import RunningServer
from tests.httpclient import request
from tests.localstack import LocalStack
from tests.registry_flows import make_manifest, push_inline, put_manifest

NAMES = ["a", "a-b", "a/b", "a/b/c", "a0", "b", "team/app", "team/app/x", "team0/app"]


def push_repository(url: str, name: str, tags: list[str]) -> None:
    config = json.dumps({"name": name}).encode()
    digest = push_inline(url, name, config)
    for tag in tags:
        assert put_manifest(url, name, tag, make_manifest((digest, len(config)), [])).status == 201


def pages(url: str, path: str, key: str, n: int) -> Iterator[list[str]]:
    """Follow ``Link: <...>; rel="next"`` from the first page to the last."""
    next_url: str | None = f"{url}{path}?n={n}"
    while next_url is not None:
        reply = request("GET", next_url)
        assert reply.status == 200, reply.body
        yield reply.json()[key]
        link = reply.header("Link")
        next_url = url + link.split(">")[0].lstrip("<") if link else None


@pytest.fixture(params=["server", "s3_server"])
def registry_url(request: pytest.FixtureRequest) -> str:
    running: RunningServer = request.getfixturevalue(request.param)
    return running.url


def test_catalog_pages_come_in_lexical_order_with_nested_names(registry_url: str) -> None:
    # GIVEN repositories whose lexical order differs from a directory walk ('-' < '/' < '0')
    prefix = "listing/"
    for name in NAMES:
        push_repository(registry_url, prefix + name, ["1"])
    # WHEN the catalog is read two at a time THEN the pages concatenate to the sorted names
    mine = [n for page in pages(registry_url, "/v1/_catalog", "repositories", 2) for n in page if n.startswith(prefix)]
    assert mine == sorted(prefix + n for n in NAMES)
    # AND a page starting deep in the listing starts right after ``last``
    deep = request("GET", f"{registry_url}/v1/_catalog?n=3&last={prefix}a/b")
    assert deep.json()["repositories"] == sorted(prefix + n for n in NAMES if prefix + n > prefix + "a/b")[:3]


def test_tag_pages_follow_link_to_the_end(registry_url: str) -> None:
    # GIVEN a repository with tags whose byte order puts capitals first
    tags = ["v10", "v2", "V1", "latest", "_x", "a.b-c"]
    push_repository(registry_url, "listing/tagged", tags)
    # WHEN its tags are read two at a time THEN every tag comes once, in byte order
    got = [t for page in pages(registry_url, "/v1/listing/tagged/tags/list", "tags", 2) for t in page]
    assert got == sorted(tags)
    # AND a malformed ``last`` is a clear 400, not a crash
    bad = request("GET", f"{registry_url}/v1/listing/tagged/tags/list?last=../x")
    assert bad.status == 400
    assert bad.error_codes == ["TAG_INVALID"]


# -- what a page costs on S3 --------------------------------------------------------------------


@pytest.fixture
def counted_s3(localstack: LocalStack) -> Iterator[tuple[Registry, list[dict[str, Any]]]]:
    """A registry on a fresh LocalStack bucket, and the parameters of every ListObjectsV2 it sends."""
    from vmregistry.storage.s3 import S3Storage
    from vmregistry.storage.s3_client import make_client

    from tests.localstack import ACCESS_KEY, REGION, SECRET_KEY, new_bucket_name

    client = make_client(region=REGION, endpoint=localstack.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: calls.append(dict(params))
    )
    storage = S3Storage(client, new_bucket_name("list"), create_bucket=True, region=REGION)
    yield Registry(storage), calls
    storage.delete_prefix("")


def test_a_catalog_page_costs_at_most_two_list_requests_anywhere(counted_s3: tuple[Registry, list[Any]]) -> None:
    registry, calls = counted_s3
    # GIVEN 2,100 repositories in the catalog (more than two S3 listing pages)
    names = [f"org{i % 3}/vm{i:05d}" for i in range(2100)]
    for name in names:
        registry.storage.write(paths.catalog_key(name), b"")
    ordered = sorted(names)
    for last in (None, ordered[999], ordered[2000]):
        calls.clear()
        # WHEN a page of 100 (or of 1,000) is read at the start, in the middle, near the end
        for n in (100, 1000):
            calls.clear()
            page = registry.manifests.repositories_page(n, last)
            # THEN it is right, and cost at most two ListObjectsV2 requests, asking for no more keys than
            # the page reads (S3 and LocalStack spend time on each key they return)
            start = ordered.index(last) + 1 if last else 0
            assert page.items == ordered[start : start + n]
            assert len(calls) <= 2, calls
            assert calls[0]["MaxKeys"] == min(n + 1, 1000)
    # AND a token scoped to org1/** walks only that range of the catalog
    calls.clear()
    page = registry.manifests.repositories_page(5, None, lambda name: name.startswith("org1/"), ["org1/"])
    assert page.items == [n for n in ordered if n.startswith("org1/")][:5]
    assert [c["Prefix"] for c in calls] == ["catalog/org1/"]


def test_a_tags_page_costs_at_most_two_list_requests(counted_s3: tuple[Registry, list[Any]]) -> None:
    registry, calls = counted_s3
    # GIVEN a repository with 1,500 tags
    config = b'{"cpus": 1}'
    registry.blobs.put_inline("many/tags", digest_of(config), config)
    body = make_manifest((digest_of(config), len(config)), [])
    registry.manifests.put("many/tags", "t00000", body, mediatypes.MANIFEST)
    tags = [f"t{i:05d}" for i in range(1500)]
    for tag in tags[1:]:
        registry.storage.write(paths.tag_key("many/tags", tag), tag_record(digest_of(body), body))
    # WHEN pages are read anywhere in the listing THEN each costs at most two listing requests
    for last in (None, "t00999", "t01400"):
        calls.clear()
        page = registry.manifests.tags_page("many/tags", 100, last)
        start = tags.index(last) + 1 if last else 0
        assert page.items == tags[start : start + 100]
        assert len(calls) <= 2


# -- the catalog under concurrent pushes and deletes --------------------------------------------


class InterleavingStorage(FilesystemStorage):
    """Runs ``before_delete[key]()`` just before ``key`` is deleted, once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.before_delete: dict[str, Callable[[], None]] = {}

    def delete(self, key: str) -> bool:
        hook = self.before_delete.pop(key, None)
        if hook is not None:
            hook()
        return super().delete(key)


def test_a_push_racing_the_last_delete_stays_in_the_catalog(tmp_path: Path) -> None:
    # GIVEN a repository with one image, and its config ready for another push
    storage = InterleavingStorage(tmp_path)
    registry = Registry(storage)
    config = b'{"cpus": 1}'
    registry.blobs.put_inline("race/cat", digest_of(config), config)
    first = make_manifest((digest_of(config), len(config)), [])
    second = make_manifest((digest_of(config), len(config)), [], annotations={"v": "2"})
    registry.manifests.put("race/cat", "1", first, mediatypes.MANIFEST)

    # WHEN the delete of its last manifest is about to remove the catalog entry, and a push lands then
    def push_meanwhile() -> None:
        registry.manifests.put("race/cat", "2", second, mediatypes.MANIFEST)

    storage.before_delete[paths.catalog_key("race/cat")] = push_meanwhile
    registry.manifests.delete("race/cat", digest_of(first))
    # THEN the repository, which holds the pushed image, is still in the catalog
    assert registry.manifests.repositories() == ["race/cat"]
    assert registry.manifests.tags("race/cat") == ["2"]


def test_reindex_repairs_the_catalog_and_migrates_the_first_layout(tmp_path: Path) -> None:
    storage: Storage = FilesystemStorage(tmp_path)
    registry = Registry(storage)
    # GIVEN an image stored in vmregistry 0.1's layout, and a catalog entry for nothing
    config = b'{"old": true}'
    digest = digest_of(config)
    body = make_manifest((digest, len(config)), [])
    storage.write(paths.blob_key(digest), config)
    storage.write(f"links/old/vm/_blobs/{digest.removeprefix('sha256:')}", str(len(config)).encode())
    storage.write(f"manifests/old/vm/{digest_of(body)}/manifest.json", body)
    storage.write("manifests/old/vm/stable/manifest.json", body)
    storage.write(paths.catalog_key("ghost"), b"")
    # WHEN reindexed
    report = reindex(storage)
    # THEN the image pulls by tag and digest under today's layout, and the catalog lists exactly it
    assert (report.migrated, report.listed, report.unlisted) == (3, 1, 1)
    assert registry.manifests.get("old/vm", "stable").data == body
    assert registry.manifests.get("old/vm", digest_of(body)).digest == digest_of(body)
    assert registry.blobs.find("old/vm", digest) is not None
    assert registry.manifests.repositories() == ["old/vm"]
    assert [key for key in storage.list("") if key.startswith(("links/", "manifests/"))] == []
    # AND running it again changes nothing
    assert reindex(storage) == type(report)()
