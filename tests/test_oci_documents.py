"""The other pure OCI pieces: bounded JSON, the referrers index, chunk ranges, the VM image's OCI form."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from vmregistry.errors import RegistryError
from vmregistry.oci import mediatypes as mt
from vmregistry.oci.chunks import check_chunk, parse_content_range, progress_headers, progress_range
from vmregistry.oci.jsondoc import MAX_DEPTH, DocumentError, nesting_depth, parse_document
from vmregistry.oci.manifests import parse_manifest
from vmregistry.oci.referrers import build_referrers_index, referrer_descriptor
from vmregistry.oci.vmimage import VM_ARTIFACT_TYPE, to_oci, to_seed

DATA = Path(__file__).parent / "data" / "oci"


# -- bounded JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b"{}", 1),
        (b'{"a":[1,{"b":2}]}', 3),
        (rb'{"a":"[[[[{{{{"}', 1),  # brackets inside strings do not count
        (rb'["\"[[[", [[]]]', 3),  # nor after an escaped quote
        (rb'["\\", [[]]]', 3),  # a string ending in an escaped backslash ends there
        (b"[" * 10_000 + b"]" * 10_000, 10_000),
    ],
)
def test_nesting_depth_skips_strings(data: bytes, depth: int) -> None:
    assert nesting_depth(data) == depth


def test_depth_limit_is_exact() -> None:
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert parse_document(at_limit) == json.loads(at_limit)
    with pytest.raises(DocumentError, match="deeper than"):
        parse_document(b"[" + at_limit + b"]")


def test_every_real_document_is_parsed_like_json_loads() -> None:
    for path in DATA.glob("*.json"):
        assert parse_document(path.read_bytes()) == json.loads(path.read_bytes()), path.name


# -- referrers ------------------------------------------------------------------------------


def _referrer(name: str) -> dict[str, object]:
    data = (DATA / name).read_bytes()
    parsed = parse_manifest(data, json.loads(data)["mediaType"])
    return referrer_descriptor(parsed, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def test_referrers_index_lists_every_referrer_with_type_and_annotations() -> None:
    # GIVEN the conformance suite's three referrers of one image: an image, two artifacts
    entries = [_referrer(n) for n in ("oci-image-subject.json", "oci-artifact-subject.json", "oci-index-subject.json")]
    # WHEN the index is built without a filter
    index = build_referrers_index(entries)
    document = json.loads(index.body)
    # THEN it is an OCI index with every entry, sorted by digest, and no filter header
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == mt.OCI_INDEX
    assert [m["digest"] for m in document["manifests"]] == sorted(str(e["digest"]) for e in entries)
    by_type = {m["mediaType"]: m for m in document["manifests"]}
    assert by_type[mt.OCI_INDEX]["artifactType"] == "application/vnd.example.oci.conformance.v1"
    artifact = next(m for m in document["manifests"] if m.get("annotations"))
    assert artifact["annotations"]["org.opencontainers.conformance"] == "hello conformance test"
    assert index.headers == {"Content-Type": mt.OCI_INDEX, "Content-Length": str(len(index.body))}


def test_artifact_type_filter_keeps_only_that_type_and_says_so() -> None:
    entries = [_referrer(n) for n in ("oci-image-subject.json", "oci-artifact-subject.json")]
    index = build_referrers_index(entries, "application/vnd.example.oci.conformance.v1")
    manifests = json.loads(index.body)["manifests"]
    assert [m["artifactType"] for m in manifests] == ["application/vnd.example.oci.conformance.v1"]
    assert index.headers["OCI-Filters-Applied"] == "artifactType"
    # the image without artifactType is listed under its config type
    assert (
        json.loads(build_referrers_index(entries, mt.OCI_CONFIG).body)["manifests"][0]["mediaType"] == mt.OCI_MANIFEST
    )


def test_no_referrers_is_an_empty_index_not_a_404() -> None:
    index = build_referrers_index([])
    assert json.loads(index.body) == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    assert build_referrers_index([], "").filters_applied == ()  # ?artifactType= names nothing


# -- chunk ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("0-1023", 0, 1023),  # the spec, the conformance suite, oras-py
        ("2048-3066", 2048, 3066),
        (" 5-5 ", 5, 5),
        ("bytes 0-1023/4096", 0, 1023),
        ("bytes 0-1023/*", 0, 1023),
        ("bytes=0-1023", 0, 1023),
    ],
)
def test_content_range_forms_clients_send(header: str, start: int, end: int) -> None:
    chunk = parse_content_range(header)
    assert (chunk.start, chunk.end, chunk.length) == (start, end, end - start + 1)


@pytest.mark.parametrize(
    "header", ["", "1023", "-5", "5-", "a-b", "5-4", "0-1-2", "bytes 0-1/x", "0-99999999999999999999"]
)
def test_malformed_content_range_is_416(header: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_content_range(header)
    assert (caught.value.code, caught.value.status) == ("RANGE_INVALID", 416)


def test_chunks_must_arrive_in_order_and_match_their_length() -> None:
    assert check_chunk(None, 1024, 500) is None  # a streamed PATCH: append it all
    assert check_chunk("1024-2047", 1024, 1024) == parse_content_range("1024-2047")
    assert check_chunk("1024-2047", 1024, None) is not None  # chunked transfer: the caller counts
    for header, length in (("0-1023", 1024), ("2048-3071", 1024), ("1024-2047", 1000)):
        with pytest.raises(RegistryError) as caught:
            check_chunk(header, 1024, length)
        assert caught.value.status == 416


def test_progress_headers() -> None:
    assert progress_range(0) == "0-0"
    assert progress_range(1) == "0-0"
    assert progress_range(3067) == "0-3066"
    headers = progress_headers("/v2/a/blobs/uploads/u1", "u1", 2048)
    assert headers == {
        "Location": "/v2/a/blobs/uploads/u1",
        "Range": "0-2047",
        "Docker-Upload-UUID": "u1",
        "Content-Length": "0",
    }


# -- the VM image's OCI form ---------------------------------------------------------------


def test_seed_manifest_and_its_oci_form_translate_both_ways_byte_exact() -> None:
    # GIVEN a manifest exactly as the seed client writes it
    seed = (DATA / "vm-manifest.json").read_bytes()
    # WHEN it is turned into its OCI form and back
    oci = to_oci(seed)
    assert oci is not None
    # THEN the OCI form is an OCI image manifest with the VM artifact type, and the way back is exact
    parsed = parse_manifest(oci, mt.OCI_MANIFEST)
    assert parsed.artifact_type == VM_ARTIFACT_TYPE == mt.VM_MANIFEST
    assert parsed.config is not None
    assert parsed.config.media_type == mt.VM_CONFIG
    assert [layer.media_type for layer in parsed.layers] == [mt.VM_DISK]
    assert to_seed(oci) == seed
    assert to_oci(to_seed(oci) or b"") == oci


def test_only_vm_images_translate() -> None:
    assert to_oci((DATA / "oci-image.json").read_bytes()) is None
    assert to_seed((DATA / "oci-image.json").read_bytes()) is None
    assert to_seed((DATA / "vm-manifest.json").read_bytes()) is None  # already the seed form
    # oras-py pushed VM config and disk types next to a text layer: not a VM image
    assert to_seed((DATA / "oras-artifact.json").read_bytes()) is None
    assert to_seed(b"[" * 10_000) is None
