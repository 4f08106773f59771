"""What a token grants: scopes read from its claims, and their one serialised form.

Two spellings of the same thing are accepted, as Docker token auth writes them:

* the ``scope`` claim: space-separated compact scopes
  ``repository:<pattern>:<action>[,<action>...]`` (a JSON list of such
  strings is accepted too);
* the ``access`` claim: ``[{"type": "repository", "name": "<pattern>",
  "actions": ["pull", "push"]}]``.

Actions are ``pull``, ``push``, ``delete`` and ``*`` (all three). Patterns
follow :mod:`vmregistry.auth.patterns`.

Strictness is split on purpose. A claim of the wrong JSON *type* (a number
where a string or list belongs) means the token is malformed: it is refused
outright (401). A single entry that does not parse (unknown resource type,
invalid pattern, unknown action, missing parts) is skipped: it grants
nothing, so requests needing it get 403, and a token that also carries good
scopes keeps them.

The authorizer hands what it verified to the handlers as one flat
API Gateway context value (context values must be strings, numbers or
booleans), the JSON of :meth:`AccessSet.to_json`; :meth:`AccessSet.from_json`
reads it back on the handler side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, get_args

from vmregistry.auth.patterns import Pattern, PatternError
from vmregistry.oci.jsondoc import parse_document
from vmregistry.routes import Action

__all__ = [
    "ACTIONS",
    "Access",
    "AccessSet",
    "ScopeError",
    "format_scope",
    "parse_access_claim",
    "parse_compact_scope",
    "parse_scope_claim",
]

ACTIONS: tuple[Action, ...] = get_args(Action)
_ALL = "*"
RESOURCE_TYPE = "repository"
# A token is at most a few KB; more entries than this is an attack, not a use case.
MAX_ENTRIES = 256


class ScopeError(ValueError):
    """A scope claim of the wrong shape: the whole token is malformed."""


class Access(NamedTuple):
    """One granted pattern and the actions granted on every name it matches."""

    pattern: Pattern
    actions: frozenset[Action]


def _actions(raw: Iterable[object]) -> frozenset[Action] | None:
    out: set[Action] = set()
    for action in raw:
        if action == _ALL:
            out.update(ACTIONS)
        elif action in ACTIONS:
            out.add(action)
        else:
            return None  # an entry naming an action we do not know is not understood: skip it whole
    return frozenset(out)


def _entry(kind: object, name: object, actions: Iterable[object]) -> Access | None:
    if kind != RESOURCE_TYPE or not isinstance(name, str):
        return None
    try:
        pattern = Pattern.parse(name)
    except PatternError:
        return None
    granted = _actions(actions)
    if not granted:
        return None
    return Access(pattern, granted)


def parse_compact_scope(text: str) -> Access | None:
    """``repository:<pattern>:<actions>`` -> Access, or None when it does not parse."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not actions:
        return None
    return _entry(kind, name, actions.split(","))


def parse_scope_claim(value: object) -> list[Access]:
    if isinstance(value, str):
        items: list[object] = list(value.split())
    elif isinstance(value, list):
        items = list(value)
    else:
        raise ScopeError("the 'scope' claim must be a string or a list of strings")
    if len(items) > MAX_ENTRIES:
        raise ScopeError(f"the 'scope' claim has more than {MAX_ENTRIES} entries")
    out: list[Access] = []
    for item in items:
        if not isinstance(item, str):
            raise ScopeError("the 'scope' claim must be a string or a list of strings")
        entry = parse_compact_scope(item)
        if entry is not None:
            out.append(entry)
    return out


def parse_access_claim(value: object) -> list[Access]:
    if not isinstance(value, list):
        raise ScopeError("the 'access' claim must be a list of objects")
    if len(value) > MAX_ENTRIES:
        raise ScopeError(f"the 'access' claim has more than {MAX_ENTRIES} entries")
    out: list[Access] = []
    for item in value:
        if not isinstance(item, dict):
            raise ScopeError("the 'access' claim must be a list of objects")
        actions = item.get("actions")
        if not isinstance(actions, list):
            continue
        entry = _entry(item.get("type"), item.get("name"), actions)
        if entry is not None:
            out.append(entry)
    return out


def format_scope(name: str, actions: Iterable[str]) -> str:
    """The compact scope string, as challenges and ``vmregistry token`` write it."""
    return f"{RESOURCE_TYPE}:{name}:{','.join(actions)}"


class AccessSet(NamedTuple):
    """Everything one token grants."""

    entries: tuple[Access, ...] = ()

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AccessSet:
        """Read ``scope`` and ``access``; raises :class:`ScopeError` on a malformed claim."""
        entries: list[Access] = []
        if claims.get("scope") is not None:
            entries += parse_scope_claim(claims["scope"])
        if claims.get("access") is not None:
            entries += parse_access_claim(claims["access"])
        return cls(tuple(entries))

    def actions_for(self, name: str) -> frozenset[Action]:
        granted: set[Action] = set()
        for entry in self.entries:
            if entry.pattern.matches(name):
                granted |= entry.actions
        return frozenset(granted)

    def allows(self, name: str, action: Action) -> bool:
        return action in self.actions_for(name)

    def to_json(self) -> str:
        return json.dumps(
            [{"name": e.pattern.text, "actions": sorted(e.actions)} for e in self.entries], separators=(",", ":")
        )

    @classmethod
    def from_json(cls, text: str) -> AccessSet:
        """The inverse of :meth:`to_json`; raises ValueError on anything else."""
        raw = parse_document(text.encode())
        if not isinstance(raw, list):
            raise ValueError("grants must be a JSON list")
        entries: list[Access] = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("actions"), list):
                raise ValueError("each grant is an object with 'name' and 'actions'")
            entry = _entry(RESOURCE_TYPE, item.get("name"), item["actions"])
            if entry is None:
                raise ValueError(f"grant {item!r} does not parse")
            entries.append(entry)
        return cls(tuple(entries))

    def name_prefixes(self, action: Action) -> list[str] | None:
        """Where the names granting ``action`` start (see :attr:`Pattern.literal_prefix`), sorted;
        ``None`` when some grant may cover any name (a walk must start at the beginning)."""
        prefixes = {e.pattern.literal_prefix for e in self.entries if action in e.actions}
        return None if "" in prefixes else sorted(prefixes)
