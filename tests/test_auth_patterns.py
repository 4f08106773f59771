"""The pattern language and scope parsing, as pure functions: the table docs/auth.md promises."""

from __future__ import annotations

import pytest
from vmregistry.auth import AccessSet, Pattern, PatternError, challenge, evaluate_policy
from vmregistry.auth.policy import arn_matches, build_policy
from vmregistry.auth.scopes import parse_compact_scope

MATCHES = [
    ("team/app", "team/app", True),
    ("team/app", "team/app/x", False),
    ("team/app", "team/apps", False),
    ("team/app", "team/ap", False),
    ("team", "team", True),
    ("team", "team/x", False),
    ("team", "teamevil", False),
    ("team/*", "team/a", True),
    ("team/*", "team", False),
    ("team/*", "team/a/b", False),
    ("team/*", "teamevil/x", False),
    ("team/**", "team/a", True),
    ("team/**", "team/a/b/c", True),
    ("team/**", "team", False),
    ("team/**", "teamevil/x", False),
    ("*", "alpine", True),
    ("*", "team/a", False),
    ("**", "team/a/b", True),
    ("*/app", "team/app", True),
    ("*/app", "team/x/app", False),
    ("team/*/db", "team/x/db", True),
    ("team/*/db", "team/x/web", False),
    # Names outside the grammar are matched by nothing, not even '**'.
    ("**", "Team/a", False),
    ("**", "team/../x", False),
    ("**", "tëam", False),
    ("**", "team//a", False),
    ("**", "/team", False),
    ("**", "team/", False),
    ("**", "a" * 256, False),
    ("*", "", False),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), MATCHES)
def test_pattern_matches_whole_components_only(pattern: str, name: str, expected: bool) -> None:
    assert Pattern.parse(pattern).matches(name) is expected


@pytest.mark.parametrize(
    "text", ["", "team*", "app-*", "**/team", "team/**/x", "team//a", "/team", "team/", "Team", "tëam", "a b", "t?am"]
)
def test_invalid_patterns_are_rejected(text: str) -> None:
    with pytest.raises(PatternError):
        Pattern.parse(text)


def test_compact_scopes() -> None:
    entry = parse_compact_scope("repository:team/*:pull,push")
    assert entry is not None
    assert entry.pattern.text == "team/*"
    assert entry.actions == {"pull", "push"}
    star = parse_compact_scope("repository:team:*")
    assert star is not None
    assert star.actions == {"pull", "push", "delete"}
    for bad in ["repository:team", "repository::pull", "repository:team:", "registry:catalog:*", "repository:team:x"]:
        assert parse_compact_scope(bad) is None, bad


def test_scope_and_access_claims_combine_and_round_trip() -> None:
    # GIVEN a token with both claims, one of its scopes malformed
    access = AccessSet.from_claims(
        {
            "scope": "repository:team/a:pull repository:TEAM:pull repository:lab/**:push",
            "access": [{"type": "repository", "name": "ops", "actions": ["delete"]}],
        }
    )
    # THEN the good entries grant what they say, the bad one nothing
    assert access.allows("team/a", "pull")
    assert not access.allows("team/a", "push")
    assert access.allows("lab/x/y", "push")
    assert access.allows("ops", "delete")
    assert access.actions_for("team") == frozenset()
    # AND the context form reads back to the same grants
    assert AccessSet.from_json(access.to_json()) == access


def test_policy_evaluation_follows_iam_rules() -> None:
    arn = "arn:aws:execute-api:eu-west-1:123:api/prod/GET/v1/team/a/tags/list"
    assert evaluate_policy(build_policy("p", "Allow", arn, {})["policyDocument"], arn)
    assert not evaluate_policy(build_policy("p", "Deny", arn, {})["policyDocument"], arn)
    other = arn.replace("team/a", "team/b")
    assert not evaluate_policy(build_policy("p", "Allow", arn, {})["policyDocument"], other)
    wide = {
        "Version": "2012-10-17",
        "Statement": [
            {"Action": "execute-api:*", "Effect": "Allow", "Resource": "arn:aws:execute-api:*:123:api/prod/*"},
            {"Action": "*", "Effect": "Deny", "Resource": ["arn:aws:execute-api:*:123:api/prod/DELETE/*"]},
        ],
    }
    assert evaluate_policy(wide, arn)
    assert not evaluate_policy(wide, arn.replace("/GET/", "/DELETE/"))
    assert arn_matches("arn:?ws:*", "arn:aws:x")
    with pytest.raises(ValueError, match="Effect"):
        evaluate_policy({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}, arn)


def test_challenge_follows_the_docker_convention() -> None:
    assert (
        challenge("https://auth.example/token", "registry", "repository:team/a:pull")
        == 'Bearer realm="https://auth.example/token",service="registry",scope="repository:team/a:pull"'
    )
