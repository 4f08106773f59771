"""The storage contract, checked the same way against every backend.

Every test cleans up what it writes: the ``backend`` fixture fails a test that
leaves objects behind. Presigned URLs are fetched over real HTTP and the bytes
compared, as distribution's driver test suite does.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from vmregistry.storage import (
    MIN_PART_SIZE,
    ChecksumMismatch,
    InvalidKey,
    ObjectNotFound,
    PresignedRequest,
    Storage,
    UploadedPart,
)

from tests.backends import backend
from tests.httpclient import request

__all__ = ["backend"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send(presigned: PresignedRequest, body: bytes) -> int:
    return request(presigned.method, presigned.url, body, dict(presigned.headers)).status


def put_part_by_url(
    backend: Storage, key: str, upload: str, number: int, data: bytes, offset: int | None = None
) -> None:
    """Part ``number`` sent to its presigned URL, as clients send parts; inline where the backend has no URLs."""
    presigned = backend.multipart_presign_part(key, upload, number, 60, offset=offset)
    if presigned is None:
        backend.multipart_put_part(key, upload, number, data, offset=offset)
    else:
        assert send(presigned, data) == 200


def tamper(url: str) -> str:
    """Change the signed object in a URL while keeping its signature."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "key" for k, _ in query):  # local data plane: the key is a parameter
        query = [(k, v + "x" if k == "key" else v) for k, v in query]
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=parts.path + "x"))


# -- objects -------------------------------------------------------------------------


def test_write_then_read_stat_and_delete(backend: Storage) -> None:
    # GIVEN an object written under a nested key
    data = os.urandom(1000)
    info = backend.write("a/b/c", data)
    # THEN it reads back whole and in slices, and stat reports its size
    assert info.size == 1000
    assert backend.read("a/b/c") == data
    assert backend.read("a/b/c", 10, 20) == data[10:30]
    stat = backend.stat("a/b/c")
    assert stat is not None
    assert stat.size == 1000
    # WHEN it is deleted THEN it is gone, and deleting again reports False
    assert backend.delete("a/b/c") is True
    assert backend.stat("a/b/c") is None
    assert backend.delete("a/b/c") is False


def test_missing_objects(backend: Storage) -> None:
    assert backend.stat("nope/nothing") is None
    with pytest.raises(ObjectNotFound):
        backend.read("nope/nothing")
    with pytest.raises(ObjectNotFound):
        backend.open("nope/nothing")
    with pytest.raises(ObjectNotFound):
        backend.move("nope/nothing", "nope/else")


def test_overwrite_replaces_whole_object(backend: Storage) -> None:
    backend.write("k", b"first version, longer than the second")
    backend.write("k", b"second")
    assert backend.read("k") == b"second"
    backend.delete("k")


def test_write_with_checksum(backend: Storage) -> None:
    # GIVEN an existing object
    backend.write("sum", b"original")
    # WHEN a write claims a digest the data does not have
    with pytest.raises(ChecksumMismatch):
        backend.write("sum", b"tampered", sha256=sha(b"something else"))
    # THEN nothing changed
    assert backend.read("sum") == b"original"
    # AND a write with the right digest goes through
    backend.write("sum", b"verified", sha256=sha(b"verified"))
    assert backend.read("sum") == b"verified"
    backend.delete("sum")


def test_failed_checksum_on_new_key_stores_nothing(backend: Storage) -> None:
    with pytest.raises(ChecksumMismatch):
        backend.write("fresh/key", b"data", sha256=sha(b"other"))
    assert backend.stat("fresh/key") is None


def test_list_is_recursive_sorted_and_prefix_exact(backend: Storage) -> None:
    keys = ["p/b/2", "p/a", "p/b/1", "pp/x", "q"]
    for key in keys:
        backend.write(key, key.encode())
    assert list(backend.list("p/")) == ["p/a", "p/b/1", "p/b/2"]
    assert list(backend.list("p/b")) == ["p/b/1", "p/b/2"]
    assert list(backend.list("p")) == ["p/a", "p/b/1", "p/b/2", "pp/x"]
    assert list(backend.list("none/")) == []
    assert backend.delete_prefix("p") == 4
    assert list(backend.list("")) == ["q"]
    backend.delete("q")


def test_move(backend: Storage) -> None:
    data = os.urandom(5000)
    backend.write("from/here", data)
    backend.write("to/there", b"old")
    backend.move("from/here", "to/there")
    assert backend.read("to/there") == data
    assert backend.stat("from/here") is None
    backend.delete("to/there")


def test_open_streams_large_objects(backend: Storage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    backend.write("big", data)
    stream = backend.open("big")
    try:
        received = b"".join(iter(lambda: stream.read(256 * 1024), b""))
    finally:
        stream.close()
    assert received == data
    backend.delete("big")


def test_concurrent_writers_leave_one_whole_object(backend: Storage) -> None:
    # GIVEN eight writers racing on one key, each with distinct content
    bodies = [bytes([i]) * (256 * 1024) for i in range(8)]
    threads = [threading.Thread(target=backend.write, args=("race", body)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN the object is exactly one writer's content, never a mixture
    assert backend.read("race") in bodies
    backend.delete("race")


BAD_KEYS = ["../escape", "a/../../b", "/absolute", "a//b", "", "a/./b", "a/", ".hidden", "a\nb", "a b", "é"]

# Every keyed method of the contract, called with a bad key (and good other arguments).
KEYED_CALLS: dict[str, Callable[[Storage, str], object]] = {
    "stat": lambda s, k: s.stat(k),
    "read": lambda s, k: s.read(k),
    "open": lambda s, k: s.open(k),
    "write": lambda s, k: s.write(k, b"x"),
    "delete": lambda s, k: s.delete(k),
    "move from": lambda s, k: s.move(k, "fine/key"),
    "move to": lambda s, k: s.move("fine/key", k),
    "presign_get": lambda s, k: s.presign_get(k, 60),
    "presign_put": lambda s, k: s.presign_put(k, 60, sha256="0" * 64),
    "marker": lambda s, k: s.marker(k),
    "multipart_create": lambda s, k: s.multipart_create(k),
    "multipart_put_part": lambda s, k: s.multipart_put_part(k, "upload", 1, b"x"),
    "multipart_presign_part": lambda s, k: s.multipart_presign_part(k, "upload", 1, 60),
    "multipart_list_parts": lambda s, k: s.multipart_list_parts(k, "upload"),
    "multipart_complete": lambda s, k: s.multipart_complete(k, "upload", []),
    "multipart_abort": lambda s, k: s.multipart_abort(k, "upload"),
    "multipart_zero_part": lambda s, k: s.multipart_zero_part(k, "upload", 1, 1024),
    "list": lambda s, k: list(s.list(k + "/")),
    "list start_after": lambda s, k: list(s.list("", start_after=k + "/x")),
    "delete_prefix": lambda s, k: s.delete_prefix(k + "/"),
    "delete_many": lambda s, k: s.delete_many(["fine/key", k]),
    "scan": lambda s, k: list(s.scan(k + "/")),
    "receive": lambda s, k: s.receive(k, io.BytesIO(b"x"), 1),
    "multipart_move_part": lambda s, k: s.multipart_move_part(k, "upload", 1, "fine/key"),
    "multipart_move_part source": lambda s, k: s.multipart_move_part("fine/key", "upload", 1, k),
    "multipart_list_uploads": lambda s, k: list(s.multipart_list_uploads(k + "/")),
}


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_escape_are_refused(backend: Storage, key: str) -> None:
    with pytest.raises(InvalidKey, match="key"):
        backend.write(key, b"x")


@pytest.mark.parametrize("method", sorted(KEYED_CALLS))
def test_every_method_refuses_bad_keys(backend: Storage, method: str) -> None:
    # GIVEN the contract's one key grammar WHEN any method gets a key outside it
    for key in ("../escape", "a//b", "/absolute", ".hidden/x", "a/./b"):
        if method.startswith(("list", "delete_prefix", "multipart_list_uploads")) and key in ("/absolute",):
            key = "a//b"
        # THEN it refuses before the backend acts, whichever backend it is
        with pytest.raises(InvalidKey):
            KEYED_CALLS[method](backend, key)
    assert list(backend.list("")) == []


def test_delete_many_removes_them_all_and_checks_every_key_first(backend: Storage) -> None:
    # GIVEN 1,100 objects (more than one S3 batch) and a key that does not exist
    keys = [f"many/{i:05d}" for i in range(1100)]
    for key in keys:
        backend.write(key, b"x")
    # WHEN a batch also names a bad key THEN nothing at all is deleted
    with pytest.raises(InvalidKey):
        backend.delete_many([*keys[:3], "../escape"])
    assert backend.stat(keys[0]) is not None
    # WHEN they are deleted with a missing one among them THEN all are gone
    backend.delete_many([*keys, "many/missing"])
    assert list(backend.list("many/")) == []


def test_scan_lists_what_list_lists_with_sizes_and_proves_content_where_it_says_so(backend: Storage) -> None:
    # GIVEN objects written whole
    bodies = {f"scan/{i:03d}": os.urandom(i * 7) for i in range(12)}
    for key, data in bodies.items():
        backend.write(key, data)
    # WHEN scanned (from the start, and after a key, a page at a time) THEN the keys are list()'s, with sizes
    infos = list(backend.scan("scan/"))
    assert [info.key for info in infos] == list(backend.list("scan/"))
    assert {info.key: info.size for info in infos} == {key: len(data) for key, data in bodies.items()}
    assert [info.key for info in backend.scan("scan/", start_after="scan/005", page_size=3)] == sorted(bodies)[6:]
    # AND a backend that says its listing proves content reports each object's MD5
    if backend.listing_proves_content:
        assert {i.key: i.etag for i in infos} == {k: hashlib.md5(d).hexdigest() for k, d in bodies.items()}
    assert backend.delete_prefix("scan/") == len(bodies)


def test_list_is_lazy_sorted_and_starts_after(backend: Storage) -> None:
    # GIVEN keys whose lexical order differs from a naive directory walk
    # ("a!" < "a-b!" < "a/b!" < "a0!": '!' < '-' < '/' < '0')
    keys = ["c/a/b!", "c/a!", "c/a-b!", "c/a0!", "c/a/c/d!", "c/b!", "c/a/b/e!"]
    for key in keys:
        backend.write(key, b"")
    expected = sorted(keys)
    # WHEN listed THEN the order is the byte order of the whole keys, as S3 gives it
    assert list(backend.list("c/")) == expected
    # WHEN listed after a key THEN exactly the keys after it, in order
    for i, key in enumerate(expected):
        assert list(backend.list("c/", start_after=key)) == expected[i + 1 :]
    assert list(backend.list("c/", start_after="c/a/b")) == [k for k in expected if k > "c/a/b"]
    assert list(backend.list("c/a/", start_after="c/0")) == [k for k in expected if k.startswith("c/a/")]
    assert list(backend.list("c/a", start_after="c/a-b!")) == [k for k in expected if "c/a-b!" < k < "c/b"]
    # WHEN a caller stops early THEN it got the first keys (the rest is never read)
    lazy = backend.list("c/")
    assert [next(lazy), next(lazy)] == expected[:2]
    assert backend.delete_prefix("c/") == len(keys)


# -- presigned URLs ----------------------------------------------------------------------


def test_presigned_get_serves_bytes_and_ranges(backend: Storage) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    backend.write("blob", data)
    url = backend.presign_get("blob", 60)
    if url is None:
        pytest.skip(f"{backend.name} cannot redirect")
    # WHEN the URL is fetched THEN it serves the object
    whole = request("GET", url)
    assert whole.status == 200
    assert whole.body == data
    # AND a Range is honoured with 206
    part = request("GET", url, headers={"Range": "bytes=1000-1999"})
    assert part.status == 206
    assert part.body == data[1000:2000]
    assert part.header("Content-Range") == f"bytes 1000-1999/{len(data)}"
    suffix = request("GET", url, headers={"Range": "bytes=-10"})
    assert suffix.status == 206
    assert suffix.body == data[-10:]
    # AND a URL altered to name another object is refused
    assert request("GET", tamper(url)).status == 403
    backend.delete("blob")


def test_presigned_get_expires(backend: Storage) -> None:
    backend.write("short-lived", b"data")
    url = backend.presign_get("short-lived", 1)
    if url is None:
        pytest.skip(f"{backend.name} cannot redirect")
    time.sleep(2.1)
    assert request("GET", url).status == 403
    backend.delete("short-lived")


def test_presigned_put_binds_the_digest(backend: Storage) -> None:
    data = os.urandom(300_000)
    presigned = backend.presign_put("incoming", 60, sha256=sha(data), size=len(data))
    if presigned is None:
        pytest.skip(f"{backend.name} cannot presign uploads")
    # WHEN a different body is sent THEN it is refused and nothing appears
    wrong = os.urandom(300_000)
    assert send(presigned, wrong) == 400
    assert backend.stat("incoming") is None
    # WHEN the right body is sent THEN the object holds exactly it
    assert send(presigned, data) == 200
    assert backend.read("incoming") == data
    backend.delete("incoming")


def test_presigned_put_records_its_marker(backend: Storage) -> None:
    data = os.urandom(1000)
    first = backend.presign_put("marked", 60, sha256=sha(data), marker="session-one")
    second = backend.presign_put("marked", 60, sha256=sha(data), marker="session-two")
    if first is None or second is None:
        pytest.skip(f"{backend.name} cannot presign uploads")
    # GIVEN nothing written yet THEN there is no marker
    assert backend.marker("marked") is None
    # WHEN one presigned PUT writes the object THEN its marker is there
    assert send(first, data) == 200
    assert backend.marker("marked") == "session-one"
    # WHEN another request rewrites the same bytes THEN the marker follows the last writer
    assert send(second, data) == 200
    assert backend.marker("marked") == "session-two"
    # AND any other write clears it, as does deleting the object
    backend.write("marked", data)
    assert backend.marker("marked") is None
    assert send(first, data) == 200
    backend.delete("marked")
    assert backend.marker("marked") is None


def test_presigned_put_refuses_altered_url(backend: Storage) -> None:
    data = b"payload"
    presigned = backend.presign_put("target", 60, sha256=sha(data))
    if presigned is None:
        pytest.skip(f"{backend.name} cannot presign uploads")
    altered = PresignedRequest(tamper(presigned.url), presigned.method, presigned.expires_at, presigned.headers)
    assert send(altered, data) == 403
    assert backend.stat("target") is None
    assert backend.stat("targetx") is None


# -- multipart --------------------------------------------------------------------------


def test_multipart_inline_and_presigned_parts(backend: Storage) -> None:
    # GIVEN a multipart upload with part 1 inline and part 2 through a presigned URL
    first, second = os.urandom(MIN_PART_SIZE), os.urandom(1234)
    upload = backend.multipart_create("mp/object")
    backend.multipart_put_part("mp/object", upload, 1, first)
    put_part_by_url(backend, "mp/object", upload, 2, second)
    # WHEN its parts are listed and completed
    parts = backend.multipart_list_parts("mp/object", upload)
    assert [(p.number, p.size) for p in parts] == [(1, MIN_PART_SIZE), (2, 1234)]
    assert backend.stat("mp/object") is None  # nothing visible before completion
    info = backend.multipart_complete("mp/object", upload, parts)
    # THEN the object is the concatenation, and a computed digest (if any) is right
    assert info.size == MIN_PART_SIZE + 1234
    assert info.sha256 in (None, sha(first + second))
    assert backend.read("mp/object") == first + second
    with pytest.raises(ObjectNotFound):
        backend.multipart_list_parts("mp/object", upload)
    backend.delete("mp/object")


def test_multipart_refuses_small_middle_parts(backend: Storage) -> None:
    upload = backend.multipart_create("mp/small")
    backend.multipart_put_part("mp/small", upload, 1, b"too small")
    backend.multipart_put_part("mp/small", upload, 2, b"last")
    parts = backend.multipart_list_parts("mp/small", upload)
    with pytest.raises(ValueError, match=r"small|part"):
        backend.multipart_complete("mp/small", upload, parts)
    assert backend.stat("mp/small") is None
    backend.multipart_abort("mp/small", upload)


def test_multipart_refuses_changed_part(backend: Storage) -> None:
    upload = backend.multipart_create("mp/changed")
    backend.multipart_put_part("mp/changed", upload, 1, b"v1")
    stale = backend.multipart_list_parts("mp/changed", upload)
    backend.multipart_put_part("mp/changed", upload, 1, b"version two")
    with pytest.raises(ValueError, match="part"):
        backend.multipart_complete("mp/changed", upload, [UploadedPart(1, stale[0].size, stale[0].etag)])
    backend.multipart_abort("mp/changed", upload)


def test_multipart_abort_discards_everything(backend: Storage) -> None:
    upload = backend.multipart_create("mp/aborted")
    backend.multipart_put_part("mp/aborted", upload, 1, b"data")
    backend.multipart_abort("mp/aborted", upload)
    with pytest.raises(ObjectNotFound):
        backend.multipart_list_parts("mp/aborted", upload)
    with pytest.raises(ObjectNotFound):
        backend.multipart_put_part("mp/aborted", upload, 2, b"more")
    backend.multipart_abort("mp/aborted", upload)  # idempotent
    assert backend.stat("mp/aborted") is None


def test_unknown_multipart_upload(backend: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        backend.multipart_list_parts("mp/none", "0" * 32)
