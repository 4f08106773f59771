"""The authorizer in-process: real API Gateway REQUEST events, real keys, real policies.

Each answer of ``vmregistry_functions.authorizer.lambda_handler`` is judged the
way API Gateway judges it: raising ``Unauthorized`` is a 401; a returned
policy is evaluated against the request's method ARN (Allow -> through,
otherwise 403); anything else would be a 500 and fails the test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from vmregistry import mediatypes, runtime
from vmregistry.auth import (
    IDENTITY_SOURCES,
    RESULT_CACHE_TTL,
    MethodArn,
    TokenError,
    Unauthorized,
    Verifier,
    evaluate_policy,
)
from vmregistry.auth.scopes import ACTIONS
from vmregistry.config import AuthMode, Settings
from vmregistry.errors import RegistryError
from vmregistry.local.events import LambdaContext, build_event
from vmregistry.local.gateway_auth import GatewayAuthorizer, authorizer_event, identity_key
from vmregistry.registry import Registry
from vmregistry.routes import ROUTES, Route, find_route
from vmregistry.storage.filesystem import FilesystemStorage
from vmregistry.storage.signing import UrlSigner
from vmregistry_functions.authorizer import lambda_handler as authorizer_handler

from tests.authkit import AUDIENCE, CASES, ISSUER, Case, Keys
from tests.registry_flows import make_manifest

DIGEST = "sha256:" + "ab" * 32
UPLOAD = "0b5e4c1a-1d2e-4f3a-8b9c-0123456789ab"


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys.generate()


@pytest.fixture
def configured(keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keys:
    key_file = tmp_path / "auth.pub"
    key_file.write_bytes(keys.public_pem)
    monkeypatch.setenv("VMREGISTRY_AUTH_PUBLIC_KEY", str(key_file))
    monkeypatch.setenv("VMREGISTRY_AUTH_ISSUER", ISSUER)
    monkeypatch.setenv("VMREGISTRY_AUTH_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    return keys


def proxy_event(method: str, path: str, authorization: str | None, query: str = "") -> dict[str, Any]:
    found = find_route(method, path)
    route, params = found if found else (None, {})
    headers = [("Host", "registry.example.test")]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    return build_event(route, params, method, path, query, headers)


def request_event(method: str, path: str, authorization: str | None, query: str = "") -> dict[str, Any]:
    event = proxy_event(method, path, authorization, query)
    return authorizer_event(event, str(MethodArn.for_event(event, region="eu-west-1")))


def judge(event: dict[str, Any]) -> int:
    """The status API Gateway would answer with after this authorizer ran."""
    try:
        response = authorizer_handler(event, LambdaContext("authorizer", "req-1"))
    except Unauthorized:
        return 401
    assert set(response) == {"principalId", "policyDocument", "context"}
    assert all(isinstance(v, str | int | float | bool) for v in response["context"].values())
    return 200 if evaluate_policy(response["policyDocument"], event["methodArn"]) else 403


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_request_is_refused(configured: Keys, case: Case) -> None:
    # GIVEN a request that is hostile or broken in one way
    event = request_event(case.method, case.path, case.authorization(configured), case.query)
    # WHEN the authorizer judges it THEN it is refused with exactly the expected 4xx
    assert judge(event) == case.expect


def test_hostile_table_is_big_enough() -> None:
    assert len(CASES) >= 25
    assert {c.expect for c in CASES} == {401, 403}


def concrete_path(route: Route, name: str = "team/app") -> str:
    values = {"name": name, "digest": DIGEST, "reference": "v1", "uuid": UPLOAD}
    path = route.template
    for key, value in values.items():
        path = path.replace("{" + key + "}", value)
    return path + ("/" if route.trailing_slash else "")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.api}-{r.operation}")
def test_every_operation_with_exactly_its_action(configured: Keys, route: Route) -> None:
    path = concrete_path(route)
    if route.action is None:
        # GIVEN a valid token with no scopes at all WHEN it calls an operation without an action THEN allowed
        assert judge(request_event(route.method, path, configured.bearer())) == 200
        return
    others = [a for a in ACTIONS if a != route.action]
    # On /v2 the function itself refuses a missing scope (the next test): the authorizer lets it through.
    refused = 200 if route.api == "v2" else 403
    # GIVEN a token with exactly the action the route table names THEN allowed
    assert judge(request_event(route.method, path, configured.bearer(f"repository:team/app:{route.action}"))) == 200
    # GIVEN every other action but that one THEN denied
    others_token = configured.bearer(f"repository:team/app:{','.join(others)}")
    assert judge(request_event(route.method, path, others_token)) == refused
    # GIVEN no scopes THEN denied
    assert judge(request_event(route.method, path, configured.bearer())) == refused


def test_on_v2_the_function_refuses_a_missing_scope_with_the_scope_to_ask_for(
    configured: Keys, registry: Registry
) -> None:
    # GIVEN a pull token, and a /v2 blob upload (which needs push)
    require_tokens(registry, "jwt")
    token = configured.bearer("repository:team/app:pull")
    event = request_event("POST", "/v2/team/app/blobs/uploads/", token)
    # WHEN the authorizer judges it THEN it lets the verified token through: API Gateway's own 403
    # could only carry a fixed challenge, and OCI clients need the scope named
    assert judge(event) == 200
    response = authorizer_handler(event, LambdaContext("authorizer", "req-1"))
    # AND the function refuses it, with the challenge naming the scope to ask for
    refused = call_handler("POST", "/v2/team/app/blobs/uploads/", response["context"], b"")
    assert refused["statusCode"] == 403
    assert "DENIED" in refused["body"]
    challenge = refused["multiValueHeaders"]["WWW-Authenticate"][0]
    assert 'scope="repository:team/app:pull,push"' in challenge
    assert 'error="insufficient_scope"' in challenge
    # AND /v1 keeps refusing at the gateway, and a name outside the grammar is refused on /v2 too
    assert judge(request_event("POST", "/v1/team/app/blobs/uploads/", token)) == 403
    assert judge(request_event("POST", "/v2/Team/app/blobs/uploads/", token)) == 403


def test_access_claim_and_wildcard_actions_are_understood(configured: Keys) -> None:
    # GIVEN Docker's access claim
    docker = configured.bearer(access=[{"type": "repository", "name": "team/*", "actions": ["pull", "push"]}])
    # WHEN used for a pull and a delete THEN pull is allowed, delete denied
    assert judge(request_event("GET", "/v1/team/app/tags/list", docker)) == 200
    assert judge(request_event("DELETE", "/v1/team/app/manifests/v1", docker)) == 403
    # GIVEN the '*' action and '**' pattern THEN deep names are covered
    everything = configured.bearer("repository:team/**:*")
    assert judge(request_event("DELETE", "/v1/team/a/b/c/manifests/v1", everything)) == 200
    assert judge(request_event("DELETE", "/v1/teamevil/a/manifests/v1", everything)) == 403


def test_minted_token_within_leeway_is_accepted(configured: Keys) -> None:
    # GIVEN a token minted by the project's own function, and one expired 10 s ago (leeway is 30 s)
    now = int(time.time())
    assert (
        judge(request_event("GET", "/v1/team/app/tags/list", "Bearer " + configured.minted("repository:team/app:pull")))
        == 200
    )
    late = configured.bearer("repository:team/app:pull", iat=now - 100, exp=now - 10)
    assert judge(request_event("GET", "/v1/team/app/tags/list", late)) == 200


def test_missing_key_configuration_is_a_401_not_a_500(monkeypatch: pytest.MonkeyPatch, keys: Keys) -> None:
    # GIVEN an authorizer deployed without a readable key
    monkeypatch.setenv("VMREGISTRY_AUTH_PUBLIC_KEY", "/nonexistent/auth.pub")
    # WHEN a request with an otherwise valid token arrives THEN it is refused as Unauthorized (fail closed)
    assert judge(request_event("GET", "/v1/team/app/tags/list", keys.bearer("repository:team/app:pull"))) == 401


# -- the authorizer-result cache ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gateway(
    keys: Keys, identity_sources: tuple[str, ...] = IDENTITY_SOURCES, clock: Clock | None = None
) -> GatewayAuthorizer:
    settings = Settings.from_env()
    return GatewayAuthorizer(
        authorizer_handler, settings, identity_sources=identity_sources, ttl=RESULT_CACHE_TTL, clock=clock or Clock()
    )


def outcome(authorizer: GatewayAuthorizer, method: str, path: str, token: str) -> int:
    try:
        authorizer(proxy_event(method, path, token))
    except RegistryError as error:
        return error.status
    return 200


@pytest.mark.parametrize("order", ["allowed-first", "denied-first"])
def test_cached_answer_never_leaks_between_repositories(configured: Keys, order: str) -> None:
    # GIVEN a token that may pull team/a but not other/b, and API Gateway's cache keyed by IDENTITY_SOURCES
    token = configured.bearer("repository:team/a:pull")
    authorizer = gateway(configured)
    requests = [("GET", "/v1/team/a/tags/list", 200), ("GET", "/v1/other/b/tags/list", 403)]
    if order == "denied-first":
        requests.reverse()
    # WHEN both are asked, then both again (the second round is answered from the cache)
    first = [outcome(authorizer, m, p, token) for m, p, _ in requests]
    calls = authorizer.invocations
    second = [outcome(authorizer, m, p, token) for m, p, _ in requests]
    # THEN every answer is right, in either order, with and without the cache
    assert first == second == [expected for _, _, expected in requests]
    assert calls == 2
    assert authorizer.invocations == 2  # the second round came from the cache


def test_cache_key_includes_method(configured: Keys) -> None:
    # GIVEN a pull-only token whose GET on a path was allowed and cached
    token = configured.bearer("repository:team/a:pull")
    authorizer = gateway(configured)
    assert outcome(authorizer, "GET", "/v1/team/a/manifests/v1", token) == 200
    # WHEN the same token DELETEs the same path THEN the cached Allow is not replayed
    assert outcome(authorizer, "DELETE", "/v1/team/a/manifests/v1", token) == 403
    assert outcome(authorizer, "HEAD", "/v1/team/a/manifests/v1", token) == 200


def test_cache_entries_expire_after_the_ttl(configured: Keys) -> None:
    clock = Clock()
    authorizer = gateway(configured, clock=clock)
    token = configured.bearer("repository:team/a:pull")
    assert outcome(authorizer, "GET", "/v1/team/a/tags/list", token) == 200
    clock.now += RESULT_CACHE_TTL - 1
    assert outcome(authorizer, "GET", "/v1/team/a/tags/list", token) == 200
    assert authorizer.invocations == 1
    clock.now += 2
    assert outcome(authorizer, "GET", "/v1/team/a/tags/list", token) == 200
    assert authorizer.invocations == 2


def test_even_a_token_only_cache_key_could_not_grant_more(configured: Keys) -> None:
    """Why the policy names exactly one method ARN: a coarser key can only falsely deny, never grant."""
    # GIVEN a cache keyed by the Authorization header alone (a misconfigured stack)
    authorizer = gateway(configured, identity_sources=("method.request.header.Authorization",))
    token = configured.bearer("repository:team/a:pull")
    # WHEN a denied request fills the cache, then an allowed one and a denied one follow
    assert outcome(authorizer, "GET", "/v1/other/b/tags/list", token) == 403
    # THEN nothing the token lacks is ever granted from the cache (other/c stays denied) ...
    assert outcome(authorizer, "GET", "/v1/other/c/tags/list", token) == 403
    assert outcome(authorizer, "DELETE", "/v1/team/a/manifests/v1", token) == 403
    # ... and the price is a false 403 for what it does grant, which the real key avoids
    assert outcome(authorizer, "GET", "/v1/team/a/tags/list", token) == 403
    assert outcome(gateway(configured), "GET", "/v1/team/a/tags/list", token) == 200


def test_identity_sources_pin_token_method_and_path(configured: Keys) -> None:
    token = configured.bearer()
    a = identity_key(proxy_event("GET", "/v1/team/a/tags/list", token), IDENTITY_SOURCES)
    b = identity_key(proxy_event("GET", "/v1/team/b/tags/list", token), IDENTITY_SOURCES)
    c = identity_key(proxy_event("DELETE", "/v1/team/a/manifests/v1", token), IDENTITY_SOURCES)
    d = identity_key(proxy_event("GET", "/v1/team/a/tags/list", configured.bearer()), IDENTITY_SOURCES)
    assert None not in (a, b, c, d)
    assert len({a, b, c, d}) == 4
    # No Authorization header: API Gateway answers 401 without calling the authorizer.
    assert identity_key(proxy_event("GET", "/v1/team/a/tags/list", None), IDENTITY_SOURCES) is None


# -- defence in depth: handlers re-check the context ------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    storage = FilesystemStorage(tmp_path / "storage", UrlSigner("http://data.test"))
    # The process's configuration (the authorizer's key, when a test set one) on this storage.
    registry = Registry(storage, dataclasses.replace(Settings.from_env(), fs_path=str(tmp_path / "storage")))
    runtime.configure(registry)
    yield registry
    runtime.reset()


def require_tokens(registry: Registry, mode: AuthMode) -> None:
    """Serve ``registry`` with the ``auth`` setting ``mode``, as a function deployed with it would."""
    runtime.configure(Registry(registry.storage, dataclasses.replace(registry.settings, auth=mode)))


def call_handler(
    method: str,
    path: str,
    authorizer: dict[str, Any] | None,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    found = find_route(method, path)
    assert found
    route, params = found
    event = build_event(route, params, method, path, "", (headers or {}).items(), body, authorizer=authorizer)
    handler = importlib.import_module(route.module).lambda_handler
    response: dict[str, Any] = handler(event, LambdaContext(route.operation, "req-1"))
    return response


def context_for(keys: Keys, *scopes: str) -> dict[str, Any]:
    """The context the real authorizer produces for a token, as API Gateway forwards it."""
    event = request_event("GET", "/v1/", keys.bearer(*scopes))
    response = authorizer_handler(event, LambdaContext("authorizer", "req-1"))
    return {**response["context"], "principalId": response["principalId"]}


def push(name: str, context: dict[str, Any] | None) -> None:
    """A blob and a manifest naming it, so the repository exists."""
    data = name.encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert call_handler("PUT", f"/v1/{name}/blobs/{digest}", context, data)["statusCode"] == 201
    manifest = make_manifest((digest, len(data)), [])
    response = call_handler("PUT", f"/v1/{name}/manifests/v1", context, manifest, {"Content-Type": mediatypes.MANIFEST})
    assert response["statusCode"] == 201, response


def test_route_without_authorizer_refuses_when_auth_required(
    configured: Keys, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a deployment requiring tokens, and a route someone wired without the authorizer
    require_tokens(registry, "jwt")
    # WHEN a request arrives with no authorizer context THEN the handler itself answers 401 with a challenge
    response = call_handler("PUT", f"/v1/team/app/blobs/{DIGEST}", None, b"x")
    assert response["statusCode"] == 401
    assert "UNAUTHORIZED" in response["body"]
    challenge = response["multiValueHeaders"]["WWW-Authenticate"][0]
    assert challenge.startswith("Bearer realm=")
    assert 'scope="repository:team/app:pull,push"' in challenge


def test_lambda_without_auth_setting_fails_closed(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a Lambda whose stack forgot VMREGISTRY_AUTH
    monkeypatch.delenv("VMREGISTRY_AUTH", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "vmregistry-tags-list")
    require_tokens(registry, Settings.from_env().auth)
    # WHEN a request arrives without a context THEN it is refused
    assert call_handler("GET", "/v1/team/app/tags/list", None)["statusCode"] == 401


def test_handler_rechecks_scope_of_a_context(
    configured: Keys, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN contexts from the real authorizer (even in a mode that does not require tokens)
    require_tokens(registry, "none")
    pull_only = context_for(configured, "repository:team/app:pull")
    pusher = context_for(configured, "repository:team/app:push")
    # WHEN a pull-only context reaches the push handler directly THEN 403 DENIED
    denied = call_handler("PUT", f"/v1/team/app/blobs/{DIGEST}", pull_only, b"x")
    assert denied["statusCode"] == 403
    assert "DENIED" in denied["body"]
    # WHEN a context for team/app reaches another repository's handler THEN 403
    assert call_handler("GET", "/v1/other/app/tags/list", pull_only)["statusCode"] == 403
    # WHEN the right context arrives THEN the handler runs (404: the repository is still empty)
    assert call_handler("GET", "/v1/team/app/tags/list", pull_only)["statusCode"] == 404
    push("team/app", pusher)
    # WHEN the context's grants are unreadable THEN they grant nothing
    broken = {**pull_only, "grants": "{not json"}
    assert call_handler("GET", "/v1/team/app/tags/list", broken)["statusCode"] == 403


def test_catalog_lists_only_what_the_token_may_pull(
    configured: Keys, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN three repositories
    require_tokens(registry, "jwt")
    admin = context_for(configured, "repository:**:*")
    for name in ("team/a", "team/b/deep", "teamevil/x"):
        push(name, admin)

    def catalog(context: dict[str, Any] | None) -> tuple[int, list[str]]:
        response = call_handler("GET", "/v1/_catalog", context)
        body = json.loads(response["body"])
        return response["statusCode"], body.get("repositories", [])

    # WHEN tokens with various scopes list the catalog THEN each sees only what it may pull
    assert catalog(admin) == (200, ["team/a", "team/b/deep", "teamevil/x"])
    assert catalog(context_for(configured, "repository:team/*:pull")) == (200, ["team/a"])
    assert catalog(context_for(configured, "repository:team/**:pull")) == (200, ["team/a", "team/b/deep"])
    assert catalog(context_for(configured, "repository:team/*:push,delete")) == (200, [])
    assert catalog(context_for(configured)) == (200, [])
    assert catalog(None)[0] == 401


def test_deeply_nested_token_json_is_refused_before_it_is_parsed(keys: Keys) -> None:
    # GIVEN tokens whose header or claims nest thousands of levels deep (json.loads would recurse)
    verifier = Verifier(serialization.load_pem_public_key(keys.public_pem))  # type: ignore[arg-type]
    for case in (c for c in CASES if c.id.startswith("deeply-nested")):
        token = (case.authorization(keys) or "").removeprefix("Bearer ")
        # WHEN it is verified THEN it is refused for its depth, not by a RecursionError
        with pytest.raises(TokenError, match="nests deeper than 64 levels"):
            verifier.verify(token)
