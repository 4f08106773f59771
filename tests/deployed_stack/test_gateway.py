"""The gateway's own answers: the authorizer's 401 and 403, and bad input turned into the registry's 4xx.

The authorizer runs before any function: no token, a token it cannot accept
(expired, another issuer, audience or key) is API Gateway's 401 with the
registry's challenge; a token for another repository, or a pull-only token
that pushes or deletes, is 403. Bad input that passes the gateway gets a
clear 4xx from the registry, never a gateway 5xx, and binary bodies arrive
byte for byte when they say what they are.
"""

from __future__ import annotations

import json

import pytest

from tests.deployed import DeployedStack
from tests.deployed_stack.helpers import GATEWAY_CHALLENGE, MISSING, UNKNOWN_UUID, MiB, put_manifest
from tests.registry_flows import digest_of


def test_no_token_gets_the_gateways_401_with_the_registrys_challenge(stack: DeployedStack) -> None:
    reply = stack.api("GET", "/v1/team/app/tags/list", token=False)
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == GATEWAY_CHALLENGE
    assert reply.error_codes == ["UNAUTHORIZED"]


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": 1_000_000_000}, "expired"),
        ({"iss": "https://someone-else.example"}, "wrong issuer"),
        ({"aud": "another-service"}, "wrong audience"),
    ],
)
def test_tokens_the_authorizer_cannot_accept_get_401(stack: DeployedStack, claims: dict[str, object], why: str) -> None:
    reply = stack.api("GET", "/v1/team/app/tags/list", headers=stack.bearer("repository:team/app:pull", **claims))
    assert reply.status == 401, why
    assert reply.error_codes == ["UNAUTHORIZED"]


def test_a_token_signed_by_another_key_gets_401(stack: DeployedStack) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization

    stranger = serialization.load_pem_private_key(stack.keys.other_private_pem, password=None)
    forged = jwt.encode(stack.keys.claims(["repository:**:pull,push,delete"]), stranger, algorithm="RS256")  # type: ignore[arg-type]
    reply = stack.api("GET", "/v1/team/app/tags/list", headers={"Authorization": f"Bearer {forged}"})
    assert reply.status == 401


def test_a_token_for_another_repository_gets_403_insufficient_scope(
    stack: DeployedStack, image: dict[str, str]
) -> None:
    reply = stack.api("GET", "/v1/team/app/tags/list", headers=stack.bearer("repository:other/app:pull"))
    assert reply.status == 403
    assert reply.error_codes == ["DENIED"]
    assert 'error="insufficient_scope"' in (reply.header("WWW-Authenticate") or "")


def test_a_pull_only_token_reads_but_cannot_push_or_delete(stack: DeployedStack, image: dict[str, str]) -> None:
    # GIVEN a token that may only pull team/app
    pull_only = stack.bearer("repository:team/app:pull")
    path = f"/v1/team/app/manifests/{image['tag']}"
    # THEN it reads the manifest ...
    assert stack.api("GET", path, headers=pull_only).status == 200
    # ... but the same token on the same path with PUT or DELETE is denied by the gateway (the
    # authorizer's cache is keyed by method and path too, so the GET's Allow is not reused)
    assert put_manifest(stack, "team/app", image["tag"], image["manifest"].encode(), **pull_only).status == 403
    assert stack.api("DELETE", path, headers=pull_only).status == 403
    assert stack.api("POST", "/v1/team/app/blobs/uploads/", headers=pull_only).status == 403
    # ... and the manifest is still there
    assert stack.api("GET", path).status == 200


BAD_INPUT: list[tuple[str, str, str, bytes, int, str]] = [
    ("short digest", "GET", "/v1/team/app/blobs/sha256:abc", b"", 400, "DIGEST_INVALID"),
    ("unknown blob", "GET", f"/v1/team/app/blobs/{MISSING}", b"", 404, "BLOB_UNKNOWN"),
    ("wrong inline body", "PUT", f"/v1/team/app/blobs/{MISSING}", b"not zeros", 400, "DIGEST_INVALID"),
    # Lambda takes bodies up to ~4.4 MB whole (6 MB payload, base64): checked against the digest, not refused.
    ("4 MiB body, wrong digest", "PUT", f"/v1/team/app/blobs/{MISSING}", bytes(4 * MiB + 1), 400, "DIGEST_INVALID"),
    ("unknown upload", "GET", f"/v1/team/app/blobs/uploads/{UNKNOWN_UUID}", b"", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("bad upload size", "POST", f"/v1/team/app/blobs/uploads/?digest={MISSING}&size=-1", b"", 400, "SIZE_INVALID"),
    ("manifest not JSON", "PUT", "/v1/team/app/manifests/broken", b"{not json", 400, "MANIFEST_INVALID"),
    ("unknown manifest", "GET", "/v1/team/app/manifests/nope", b"", 404, "MANIFEST_UNKNOWN"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"), [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_gets_the_registrys_4xx_through_the_gateway(
    stack: DeployedStack, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    reply = stack.api(method, path, body or None, {"Content-Type": "application/octet-stream"} if body else None)
    assert (reply.status, reply.error_codes) == (status, [code]), reply.body[:500]


def test_a_binary_body_needs_a_content_type_to_pass_the_gateway_intact(stack: DeployedStack) -> None:
    # GIVEN bytes that are not UTF-8, sent inline
    data = bytes(range(256)) * 4
    path = f"/v1/team/binary/blobs/{digest_of(data)}"
    # WHEN they are sent without a Content-Type, API Gateway hands them to the function as text
    # (binaryMediaTypes match on the request's Content-Type), so they arrive changed ...
    mangled = stack.api("PUT", path, data)
    # THEN the registry refuses them as not matching the digest, and stores nothing
    assert (mangled.status, mangled.error_codes) == (400, ["DIGEST_INVALID"])
    assert stack.api("HEAD", path).status == 404
    # ... while with a Content-Type, as the reference client sends, they arrive byte for byte
    sent = stack.api("PUT", path, data, {"Content-Type": "application/octet-stream"})
    assert sent.status == 201, sent.body
    assert stack.api("HEAD", path).status == 200


def test_an_uppercase_name_is_refused_before_any_function_runs(stack: DeployedStack) -> None:
    # The authorizer denies names outside the grammar (it decides per repository), so the
    # gateway answers 403 in the registry's error format; no handler sees the request.
    reply = stack.api("GET", "/v1/Team/App/tags/list")
    assert reply.status == 403
    assert json.loads(reply.body)["errors"][0]["code"] == "DENIED"
