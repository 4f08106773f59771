"""Package names that load their module on first access (PEP 562 ``__getattr__``).

A Lambda function imports only what its operation uses: the registry's domain
modules (:mod:`vmregistry.registry`) and the token machinery with pyjwt and
cryptography (:mod:`vmregistry.auth`) are re-exported by their packages
without being imported with them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a name to the submodule holding it.

    The first access imports ``<package>.<submodule>`` and keeps the value in the
    package, so later accesses are plain attribute lookups.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__
