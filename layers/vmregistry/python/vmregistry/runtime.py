"""The process-wide settings and registry: built once, at the entry point.

In Lambda the first invocation builds them from ``VMREGISTRY_*`` variables and
warm invocations reuse them. The local server calls :func:`configure` before it
serves, because only it knows the data plane's URL and signing key and whether
tokens are required (:mod:`vmregistry.local.app`).
"""

from __future__ import annotations

import threading

from vmregistry.config import Settings
from vmregistry.registry import Registry

__all__ = ["configure", "get_registry", "get_settings", "reset"]

_lock = threading.Lock()
_registry: Registry | None = None
_settings: Settings | None = None


def configure(registry: Registry) -> None:
    global _registry, _settings
    with _lock:
        _registry = registry
        _settings = registry.settings


def reset() -> None:
    global _registry, _settings
    with _lock:
        _registry = None
        _settings = None


def get_settings() -> Settings:
    """The configuration; reading it does not build the storage client (the authorizer needs no storage)."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = Settings.from_env()
    return _settings


def get_registry() -> Registry:
    global _registry
    if _registry is None:
        settings = get_settings()
        with _lock:
            if _registry is None:
                from vmregistry.storage.factory import open_storage

                verifier = None
                if settings.verify_function:
                    from vmregistry.verifiers import lambda_verifier

                    verifier = lambda_verifier(settings.verify_function)
                _registry = Registry(open_storage(settings), settings, verifier)
    return _registry
