"""The process-wide registry: built once, at the entry point, from the environment.

In Lambda the first invocation builds it from ``VMREGISTRY_*`` variables and
warm invocations reuse it. The local server calls :func:`configure` before it
serves, because only it knows the data plane's URL and signing key.
"""

from __future__ import annotations

import threading

from vmregistry.config import Settings
from vmregistry.registry import Registry

__all__ = ["configure", "get_registry", "reset"]

_lock = threading.Lock()
_registry: Registry | None = None


def configure(registry: Registry) -> None:
    global _registry
    with _lock:
        _registry = registry


def reset() -> None:
    global _registry
    with _lock:
        _registry = None


def get_registry() -> Registry:
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                from vmregistry.storage.factory import open_storage

                settings = Settings.from_env()
                verifier = None
                if settings.verify_function:
                    from vmregistry.verifiers import lambda_verifier

                    verifier = lambda_verifier(settings.verify_function)
                _registry = Registry(open_storage(settings), settings, verifier)
    return _registry
