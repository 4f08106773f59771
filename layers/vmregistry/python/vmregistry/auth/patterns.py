"""The repository pattern language of token scopes.

A scope names a repository *pattern*; this module decides which repository
names a pattern covers. The language is deliberately small, and every rule
exists so that a pattern can never reach across a name boundary:

* A pattern is path components joined by ``/``, like a repository name.
* A literal component matches exactly that component. Literal components
  follow the component grammar of :mod:`vmregistry.names` (lowercase
  ``[a-z0-9]`` separated by ``.``, ``_``, ``__`` or runs of ``-``).
* ``*`` as a whole component matches exactly one component, whatever it is.
* ``**`` as the *last* component matches one or more components.
* Nothing else is a wildcard: ``*`` inside a component (``team*``,
  ``app-*``) or ``**`` anywhere but at the end makes the pattern invalid,
  and an invalid pattern grants nothing.

Matching compares whole components, never string prefixes, so:

======================  =====================================  ==========================
pattern                 matches                                does not match
======================  =====================================  ==========================
``team/app``            ``team/app``                           ``team/app/x``, ``team/apps``
``team``                ``team``                               ``team/x``, ``teamevil``
``team/*``              ``team/a``, ``team/b``                 ``team``, ``team/a/b``, ``teamevil/x``
``team/**``             ``team/a``, ``team/a/b/c``             ``team``, ``teamevil/x``
``*``                   ``alpine``, ``team``                   ``team/a``
``**``                  every valid name                       (nothing valid is excluded)
``*/app``               ``team/app``, ``other/app``            ``team/x/app``
======================  =====================================  ==========================

A name is tested against the grammar of :func:`vmregistry.names.is_valid_name`
first: a name outside it (upper case, non-ASCII, ``..``, an empty component,
too long) is matched by no pattern at all, not even ``**``.
"""

from __future__ import annotations

from typing import NamedTuple

from vmregistry.names import MAX_NAME_LENGTH, is_valid_name

__all__ = ["ANY_COMPONENT", "ANY_SUFFIX", "Pattern", "PatternError"]

ANY_COMPONENT = "*"
ANY_SUFFIX = "**"


class PatternError(ValueError):
    """The text is not a pattern of this language."""


class Pattern(NamedTuple):
    """A parsed repository pattern; build with :meth:`parse`."""

    text: str
    components: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Pattern:
        if not isinstance(text, str) or not text:
            raise PatternError("a repository pattern must be a non-empty string")
        if len(text) > MAX_NAME_LENGTH:
            raise PatternError(f"a repository pattern is at most {MAX_NAME_LENGTH} characters")
        components = tuple(text.split("/"))
        for index, component in enumerate(components):
            if component == ANY_COMPONENT:
                continue
            if component == ANY_SUFFIX:
                if index != len(components) - 1:
                    raise PatternError(f"{ANY_SUFFIX!r} may only be the last component of a pattern")
                continue
            # One valid component is a valid one-component name (it contains no '/').
            if not is_valid_name(component):
                raise PatternError(f"pattern component {component[:80]!r} is neither a name component nor '*' or '**'")
        return cls(text, components)

    @property
    def literal_prefix(self) -> str:
        """What every name the pattern covers starts with: its components before the first wildcard.

        ``team/*`` -> ``"team/"``, ``team/app`` -> ``"team/app"``, ``*/app`` -> ``""``. A
        listing may start its walk there instead of at the beginning.
        """
        literal: list[str] = []
        for component in self.components:
            if component in (ANY_COMPONENT, ANY_SUFFIX):
                return "/".join(literal) + "/" if literal else ""
            literal.append(component)
        return "/".join(literal)

    def matches(self, name: str) -> bool:
        """Does this pattern cover the repository ``name``?"""
        if not isinstance(name, str) or not is_valid_name(name):
            return False
        parts = name.split("/")
        pattern = self.components
        if pattern[-1] == ANY_SUFFIX:
            pattern = pattern[:-1]
            if len(parts) <= len(pattern):  # '**' needs at least one component
                return False
            parts = parts[: len(pattern)]
        elif len(parts) != len(pattern):
            return False
        return all(want in (ANY_COMPONENT, got) for want, got in zip(pattern, parts, strict=True))

    def __str__(self) -> str:
        return self.text
