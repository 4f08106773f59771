"""Every /v1 operation reaches its own function, for repository names of depth 1 to the maximum.

The synthesized template is read back into the resource tree API Gateway
builds from it, and concrete request paths are resolved against that tree
the way API Gateway does: segment by segment, a static child winning over a
variable one. The integrated function's handler must then be the route's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from vmregistry.routes import ROUTES, Route

from tests.infra_synth import Synthesized, resources_of_type, synthesized

DIGEST = "sha256:" + "ab" * 32
UUID = "0d3e6c1a-5e8b-4f7a-9c2d-1b2a3c4d5e6f"


@dataclass
class Node:
    """One API Gateway resource: its path part, children, and methods (HTTP method -> handler)."""

    part: str
    children: dict[str, Node] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)

    def child(self, segment: str) -> Node | None:
        if segment in self.children:  # static beats variable, as in API Gateway
            return self.children[segment]
        variables = [node for part, node in self.children.items() if part.startswith("{")]
        assert len(variables) <= 1, f"ambiguous variables under {self.part}: {[n.part for n in variables]}"
        return variables[0] if variables else None

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Node]]:
        path = f"{prefix}/{self.part}" if self.part else ""
        yield path or "/", self
        for node in self.children.values():
            yield from node.walk(path)


def _ref(value: Any) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise AssertionError(f"not a reference: {value!r}")


def _integrated_function(method: dict[str, Any]) -> str:
    """The logical id of the Lambda function a proxy method's integration URI points at."""
    uri = method["Properties"]["Integration"]["Uri"]
    parts = uri["Fn::Join"][1]
    refs = [_ref(part) for part in parts if isinstance(part, dict) and "Fn::GetAtt" in part]
    assert len(refs) == 1, uri
    return refs[0]


def resource_tree(synth: Synthesized) -> Node:
    template = synth.template
    (api_id,) = resources_of_type(template, "AWS::ApiGateway::RestApi")
    nodes: dict[str, Node] = {api_id: Node("")}
    pending = resources_of_type(template, "AWS::ApiGateway::Resource")
    while pending:  # parents first
        for key, resource in list(pending.items()):
            props = resource["Properties"]
            parent = _ref(props["ParentId"])
            if parent in nodes:
                nodes[key] = Node(props["PathPart"])
                assert props["PathPart"] not in nodes[parent].children
                nodes[parent].children[props["PathPart"]] = nodes[key]
                del pending[key]
    functions = resources_of_type(template, "AWS::Lambda::Function")
    for method in resources_of_type(template, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        node = nodes[_ref(props["ResourceId"])]
        assert props["HttpMethod"] not in node.methods, "one method declared twice"
        node.methods[props["HttpMethod"]] = functions[_integrated_function(method)]["Properties"]["Handler"]
    return nodes[api_id]


def resolve(tree: Node, path: str) -> Node | None:
    node: Node | None = tree
    for segment in path.strip("/").split("/"):
        node = node.child(segment) if node else None
    return node


def concrete_path(route: Route, name: str) -> str:
    values = {"name": name, "digest": DIGEST, "reference": "latest", "uuid": UUID}
    path = route.template
    for key, value in values.items():
        path = path.replace("{" + key + "}", value)
    return path


def repository(depth: int) -> str:
    return "/".join(f"team{i}" for i in range(1, depth + 1))


@pytest.fixture(scope="module")
def synth() -> Synthesized:
    return synthesized()


@pytest.fixture(scope="module")
def tree(synth: Synthesized) -> Node:
    return resource_tree(synth)


@pytest.fixture(scope="module")
def max_depth(synth: Synthesized) -> int:
    return int(synth.context["maxRepositoryDepth"])


def test_every_operation_reaches_its_function_at_every_depth(tree: Node, max_depth: int) -> None:
    # GIVEN every route and every repository depth the stack was configured for
    for route in ROUTES:
        for depth in range(1, max_depth + 1) if route.has_name else [1]:
            path = concrete_path(route, repository(depth))
            # WHEN API Gateway resolves the concrete request path
            node = resolve(tree, path)
            # THEN a resource serves it, and its method integrates with the route's own handler
            assert node is not None, f"{route.method} {path}: no resource"
            assert node.methods.get(route.method) == route.handler, f"{route.method} {path}"
            # ... and the handler itself accepts that path as its route (the depth is only API Gateway's)
            assert route.match(path) is not None


def test_trailing_slash_paths_resolve_like_api_gateway(tree: Node) -> None:
    # GIVEN the routes clients call with a trailing slash (API Gateway ignores it)
    for route in (r for r in ROUTES if r.template.endswith("/") or r.trailing_slash):
        path = concrete_path(route, "team/app").rstrip("/") + "/"
        # WHEN resolved, THEN the same function serves it
        node = resolve(tree, path)
        assert node is not None
        assert node.methods[route.method] == route.handler


def test_names_deeper_than_the_maximum_reach_no_function(tree: Node, max_depth: int) -> None:
    # GIVEN a name one component deeper than configured
    for route in (r for r in ROUTES if r.has_name):
        path = concrete_path(route, repository(max_depth + 1))
        # WHEN resolved, THEN no method serves it (API Gateway answers 403 before any function runs)
        node = resolve(tree, path)
        assert node is None or route.method not in node.methods


def test_the_tree_holds_exactly_the_route_table_and_nothing_else(tree: Node, max_depth: int) -> None:
    # GIVEN the methods in the template
    declared = {(method, path) for path, node in tree.walk() for method in node.methods}
    # WHEN compared with the routes expanded per depth
    expected = {
        (route.method, route.resource(depth).rstrip("/") or "/")
        for route in ROUTES
        for depth in (range(1, max_depth + 1) if route.has_name else [1])
    }
    # THEN nothing is missing and nothing extra (no stray ANY or proxy method) is exposed
    assert declared == expected


def test_each_function_keeps_one_permission_for_the_whole_api(synth: Synthesized) -> None:
    # GIVEN the Lambda permissions API Gateway invokes functions with
    permissions = resources_of_type(synth.template, "AWS::Lambda::Permission")
    targets = [_ref(p["Properties"]["FunctionName"]) for p in permissions.values()]
    integrated = {
        _integrated_function(m) for m in resources_of_type(synth.template, "AWS::ApiGateway::Method").values()
    }
    # THEN each function has exactly one (not one per method and depth, which would exhaust
    # CloudFormation's 500-resource limit), and every function the API integrates has one
    assert sorted(targets) == sorted(set(targets))
    assert integrated <= set(targets)
