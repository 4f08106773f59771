"""Manifest and index validation on real documents: what the conformance suite, skopeo and oras-py push.

The documents in ``tests/data/oci`` were captured with ``conformance.proxy`` from
the OCI conformance suite, skopeo 1.9.3 (an OCI layout, and its Docker schema 2
conversion and manifest list) and oras-py 0.2.43, plus the seed client's VM
manifest (``client/_image.py``). Broken variants are made from them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from vmregistry.errors import RegistryError
from vmregistry.oci import mediatypes as mt
from vmregistry.oci.manifests import MAX_DESCRIPTORS, ManifestKind, ParsedManifest, parse_manifest

DATA = Path(__file__).parent / "data" / "oci"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def document(name: str) -> dict[str, Any]:
    value = json.loads(load(name))
    assert isinstance(value, dict)
    return value


def dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def refused(data: bytes, content_type: str | None = None) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        parse_manifest(data, content_type)
    assert caught.value.code == "MANIFEST_INVALID"
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(
    ("name", "kind", "blobs", "children"),
    [
        ("oci-image.json", ManifestKind.OCI_MANIFEST, 3, 0),
        ("oci-image-skopeo-layout.json", ManifestKind.OCI_MANIFEST, 3, 0),
        ("oci-image-sha512.json", ManifestKind.OCI_MANIFEST, 3, 0),
        ("oci-no-layers.json", ManifestKind.OCI_MANIFEST, 1, 0),
        ("oci-data-field.json", ManifestKind.OCI_MANIFEST, 3, 0),
        ("oci-artifact.json", ManifestKind.OCI_MANIFEST, 2, 0),
        # config and layer are both the two bytes "{}": one blob to check, not two
        ("oci-artifact-without-layers.json", ManifestKind.OCI_MANIFEST, 1, 0),
        ("oras-artifact.json", ManifestKind.OCI_MANIFEST, 3, 0),
        ("oras-artifact-type.json", ManifestKind.OCI_MANIFEST, 2, 0),
        ("oci-index.json", ManifestKind.OCI_INDEX, 0, 2),
        ("oci-index-nested.json", ManifestKind.OCI_INDEX, 0, 2),
        ("oci-index-empty.json", ManifestKind.OCI_INDEX, 0, 0),
        ("oci-index-sha512.json", ManifestKind.OCI_INDEX, 0, 2),
        ("oci-index-custom-fields.json", ManifestKind.OCI_INDEX, 0, 2),
        ("oci-artifact-index.json", ManifestKind.OCI_INDEX, 0, 2),
        ("docker-manifest.json", ManifestKind.DOCKER_MANIFEST, 3, 0),
        # skopeo wrote one manifest under two platforms: one child to check
        ("docker-manifest-list.json", ManifestKind.DOCKER_MANIFEST_LIST, 0, 1),
        ("vm-manifest.json", ManifestKind.VM_MANIFEST, 2, 0),
    ],
)
def test_real_documents_parse_into_their_kind_and_references(
    name: str, kind: ManifestKind, blobs: int, children: int
) -> None:
    # GIVEN a document a real client pushed, with the Content-Type it sent
    data = load(name)
    content_type = json.loads(data).get("mediaType")
    # WHEN it is validated
    parsed = parse_manifest(data, content_type)
    # THEN its kind, media type and distinct references are known
    assert parsed.kind is kind
    assert parsed.media_type == kind.value
    assert len(parsed.blobs) == blobs
    assert len(parsed.children) == children
    referenced = {d.digest for d in (*parsed.layers, *parsed.manifests)} | (
        {parsed.config.digest} if parsed.config else set()
    )
    assert {d.digest for d in (*parsed.blobs, *parsed.children, *parsed.foreign_layers)} == referenced


def test_an_image_lists_its_config_and_layers_as_blobs_in_order() -> None:
    source = document("oci-image.json")
    parsed = parse_manifest(load("oci-image.json"), mt.OCI_MANIFEST)
    assert [b.digest for b in parsed.blobs] == [source["config"]["digest"]] + [x["digest"] for x in source["layers"]]
    assert [b.size for b in parsed.blobs] == [source["config"]["size"]] + [x["size"] for x in source["layers"]]
    assert parsed.subject is None
    assert parsed.referrer_artifact_type == mt.OCI_CONFIG  # no artifactType: the config's type


def test_non_distributable_layers_are_not_required_in_the_repository() -> None:
    # GIVEN the suite's image with two non-distributable layers (never pushed) and a normal one
    parsed = parse_manifest(load("oci-nondistributable.json"), mt.OCI_MANIFEST)
    # THEN only the config and the normal layer must be held; the others are foreign, with their URLs
    assert [b.media_type for b in parsed.blobs] == [mt.OCI_CONFIG, mt.OCI_LAYER_GZIP]
    assert {f.media_type for f in parsed.foreign_layers} == {
        mt.OCI_LAYER_NONDISTRIBUTABLE,
        mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    }
    assert all(f.urls for f in parsed.foreign_layers)


def test_subject_and_artifact_type_of_referrers() -> None:
    artifact = parse_manifest(load("oci-artifact-subject.json"), mt.OCI_MANIFEST)
    image = parse_manifest(load("oci-image-subject.json"), mt.OCI_MANIFEST)
    index = parse_manifest(load("oci-index-subject.json"), mt.OCI_INDEX)
    assert artifact.subject is not None
    assert artifact.subject.digest == document("oci-artifact-subject.json")["subject"]["digest"]
    assert artifact.referrer_artifact_type == "application/vnd.example.oci.conformance.v1"
    assert artifact.annotations["org.opencontainers.conformance"] == "hello conformance test"
    assert image.referrer_artifact_type == mt.OCI_CONFIG
    assert index.subject is not None
    assert index.referrer_artifact_type == "application/vnd.example.oci.conformance.v1"
    plain_index = parse_manifest(load("oci-index.json"), mt.OCI_INDEX)
    assert plain_index.referrer_artifact_type is None  # an index has no config to fall back on


def test_docker_manifests_ignore_oci_only_fields() -> None:
    # A subject in a Docker manifest is not OCI's subject: it must not create a referrer.
    source = document("docker-manifest.json")
    source["subject"] = document("oci-image-subject.json")["subject"]
    source["artifactType"] = "application/vnd.example"
    parsed = parse_manifest(dump(source), mt.DOCKER_MANIFEST)
    assert parsed.subject is None
    assert parsed.artifact_type is None


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("oci-image.json", None),
        ("oci-image.json", "application/json"),
        ("oci-image.json", "application/octet-stream"),
        ("oci-image.json", f"{mt.OCI_MANIFEST}; charset=utf-8"),
        ("oci-index.json", None),
    ],
)
def test_generic_or_absent_content_type_defers_to_the_document(name: str, content_type: str | None) -> None:
    parsed = parse_manifest(load(name), content_type)
    assert parsed.media_type == json.loads(load(name))["mediaType"]


def test_oci_documents_without_media_type_take_it_from_content_type_or_shape() -> None:
    image = document("oci-image.json")
    del image["mediaType"]
    index = document("oci-index.json")
    del index["mediaType"]
    assert parse_manifest(dump(image), mt.OCI_MANIFEST).kind is ManifestKind.OCI_MANIFEST
    assert parse_manifest(dump(image), None).kind is ManifestKind.OCI_MANIFEST
    assert parse_manifest(dump(index), "application/json").kind is ManifestKind.OCI_INDEX
    # the Content-Type cannot turn a manifest-shaped document into an index
    error = refused(dump(image), mt.OCI_INDEX)
    assert "shape" in error.message


@pytest.mark.parametrize(
    ("mutate", "content_type", "reason"),
    [
        (lambda d: d, mt.OCI_INDEX, "Content-Type must match"),
        (lambda d: d | {"mediaType": "application/vnd.example.manifest"}, None, "unsupported manifest media type"),
        (lambda d: d | {"mediaType": mt.DOCKER_SCHEMA1_SIGNED}, None, "schema 1"),
        (lambda d: {k: v for k, v in d.items() if k != "mediaType"}, mt.DOCKER_MANIFEST, "must carry its mediaType"),
        (lambda d: d | {"manifests": []}, None, None),  # has mediaType: the type decides, "manifests" is an extension
        (lambda d: {k: v for k, v in d.items() if k != "mediaType"} | {"manifests": []}, None, "either manifests"),
        (lambda d: d | {"schemaVersion": 1}, None, "schemaVersion"),
        (lambda d: d | {"schemaVersion": True}, None, "schemaVersion"),
        (lambda d: d | {"schemaVersion": "2"}, None, "schemaVersion"),
        (lambda d: d | {"config": None}, None, "config must be a descriptor"),
        (lambda d: d | {"layers": {}}, None, "layers must be a list"),
        (lambda d: d | {"artifactType": "not a media type"}, None, "artifactType"),
        (lambda d: d | {"annotations": {"a": 1}}, None, "annotations"),
        (lambda d: d | {"subject": {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:abc", "size": 1}}, None, "subject"),
    ],
)
def test_malformed_manifests_are_refused_with_the_reason(
    mutate: Any, content_type: str | None, reason: str | None
) -> None:
    data = dump(mutate(document("oci-image.json")))
    if reason is None:
        assert parse_manifest(data, content_type).kind is ManifestKind.OCI_MANIFEST
        return
    assert reason in refused(data, content_type).message


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("mediaType", "nope", "layers[1].mediaType"),
        ("mediaType", None, "layers[1].mediaType"),
        ("digest", "sha256:" + "A" * 64, "layers[1].digest"),
        ("digest", "sha256:" + "a" * 63, "layers[1].digest"),
        ("digest", "md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("digest", "sha512:" + "a" * 64, "layers[1].digest"),
        ("size", -1, "layers[1].size"),
        ("size", 1.0, "layers[1].size"),
        ("size", True, "layers[1].size"),
        ("size", 2**63, "layers[1].size"),
        ("urls", "https://example.com/x", "layers[1].urls"),
        ("urls", [1], "layers[1].urls"),
        ("annotations", ["a"], "layers[1].annotations"),
        ("artifactType", 7, "layers[1].artifactType"),
        ("data", "!!!", "not valid base64"),
        ("data", "e30=", "holds 2 bytes"),
    ],
)
def test_each_descriptor_field_is_checked_and_named(field: str, value: Any, reason: str) -> None:
    source = document("oci-image.json")
    source["layers"][1][field] = value
    assert reason in refused(dump(source), mt.OCI_MANIFEST).message


def test_embedded_data_must_hash_to_the_digest() -> None:
    # GIVEN the suite's data-field manifest with one layer's data swapped for the config's
    source = document("oci-data-field.json")
    source["layers"][0]["data"] = source["config"]["data"]
    source["layers"][0]["size"] = source["config"]["size"]
    # THEN the mismatch is caught: a client might use the data without fetching the blob
    assert "does not hash" in refused(dump(source), mt.OCI_MANIFEST).message


def test_index_platforms_are_checked() -> None:
    source = document("oci-index.json")
    source["manifests"][0]["platform"] = {"os": "linux"}
    assert "manifests[0].platform.architecture" in refused(dump(source), mt.OCI_INDEX).message
    source["manifests"][0]["platform"] = {"os": "linux", "architecture": "arm64", "os.features": "x"}
    assert "os.features" in refused(dump(source), mt.OCI_INDEX).message


def test_one_digest_with_two_sizes_is_a_contradiction() -> None:
    source = document("oci-image.json")
    source["layers"][1] = dict(source["layers"][0], size=source["layers"][0]["size"] + 1)
    error = refused(dump(source), mt.OCI_MANIFEST)
    assert error.detail["digest"] == source["layers"][0]["digest"]


def test_repeated_layers_cost_one_lookup() -> None:
    # GIVEN a manifest listing the same layer 1,000 times (legitimate, and issue 19's cost case)
    source = document("oci-image.json")
    source["layers"] = [source["layers"][0]] * 1000
    parsed = parse_manifest(dump(source), mt.OCI_MANIFEST)
    # THEN the layers are all there but only two blobs need checking
    assert len(parsed.layers) == 1000
    assert [b.digest for b in parsed.blobs] == [source["config"]["digest"], source["layers"][0]["digest"]]


def _with_layers(count: int) -> bytes:
    source = document("oci-image.json")
    layer = source["layers"][0]
    source["layers"] = [
        dict(layer, digest="sha256:" + hashlib.sha256(str(i).encode()).hexdigest()) for i in range(count)
    ]
    return dump(source)


def test_the_descriptor_cap_is_accepted_and_one_more_is_refused_naming_it() -> None:
    assert len(parse_manifest(_with_layers(MAX_DESCRIPTORS), mt.OCI_MANIFEST).blobs) == MAX_DESCRIPTORS + 1
    error = refused(_with_layers(MAX_DESCRIPTORS + 1), mt.OCI_MANIFEST)
    assert str(MAX_DESCRIPTORS) in error.message
    assert error.detail == {"limit": MAX_DESCRIPTORS, "count": MAX_DESCRIPTORS + 1}


def test_the_cap_applies_to_indexes() -> None:
    source = document("oci-index.json")
    source["manifests"] = source["manifests"][:1] * (MAX_DESCRIPTORS + 1)
    assert "manifests lists 4097 descriptors" in refused(dump(source), mt.OCI_INDEX).message


def test_a_very_deep_document_is_a_clean_manifest_invalid() -> None:
    # GIVEN 10,000 nested arrays (json.loads alone raises RecursionError)
    deep = b'{"schemaVersion":2,"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    # THEN it is refused as a manifest, not a crash
    assert "nests deeper" in refused(deep, mt.OCI_MANIFEST).message


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"schemaVersion":2,"schemaVersion":2}', "appears twice"),
        (b'{"schemaVersion":NaN}', "NaN"),
        (b"\xef\xbb\xbf{}", "byte order mark"),
        ('{"schemaVersion":2}'.encode("utf-16"), "not UTF-8"),
        (b'{"schemaVersion":2', "not valid JSON"),
    ],
)
def test_bytes_that_are_not_a_clean_json_object_are_refused(data: bytes, reason: str) -> None:
    assert reason in refused(data).message


def test_the_suite_large_manifest_within_4_mib_is_accepted() -> None:
    # GIVEN the conformance suite's "large manifest": 390 annotations of 10,000 characters (3.9 MB)
    source = document("oci-image.json")
    source["annotations"] = {f"large-annotation-{i}": "A" * 10_000 for i in range(390)}
    data = dump(source)
    assert 3_900_000 < len(data) < 4 * 1024 * 1024
    # THEN it parses, annotations intact
    parsed: ParsedManifest = parse_manifest(data, mt.OCI_MANIFEST)
    assert len(parsed.annotations) == 390


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("config", "application/vnd.oci.image.config.v1+json", "config.mediaType must be"),
        ("layer", "application/vnd.oci.image.layer.v1.tar", "layers[0].mediaType must be"),
    ],
)
def test_the_vm_manifest_keeps_the_seed_rules(field: str, value: str, reason: str) -> None:
    source = document("vm-manifest.json")
    target = source["config"] if field == "config" else source["layers"][0]
    target["mediaType"] = value
    assert reason in refused(dump(source), mt.VM_MANIFEST).message
