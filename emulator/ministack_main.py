"""MiniStack's entry point with the emulator's gaps bridged: run by MiniStack's own interpreter.

``python emulator/ministack_main.py`` (with the ``.ministack-venv`` interpreter)
patches MiniStack in memory, then starts it exactly as its ``ministack``
command would. Nothing here changes what is deployed: every patch makes the
emulator behave the way AWS does for the stack as it is (docs/deploy.md lists
each difference and what AWS does):

* **Identity sources** ``context.httpMethod`` and ``context.path``: MiniStack
  treats every ``context.*`` source of a REQUEST authorizer as absent, so with
  caching on every request got 401 before the authorizer ran. They resolve
  here to the request's method and ``/<stage><path>``, as in AWS, and take part
  in the authorizer cache key (the registry's cache design depends on it: see
  ``vmregistry.auth.policy``).
* **Custom domains** (what OCI clients need: ``/v2`` at the host root):
  MiniStack's ECR answers every ``/v2/...`` registry path whatever the
  ``Host``, so a request to an API's custom domain reached ECR instead of the
  API; and the function was told ``/<stage><path>`` as the path the client
  sent. Here a request addressed to a registered custom domain goes to its
  API, and ``requestContext.path`` (and the ``context.path`` identity source)
  is the path as sent on that domain, as in AWS (the registry writes
  ``Location`` and ``Link`` from it).
* **One port**: with TLS on, MiniStack also listens on 443 when it can (for
  Cognito issuers); the harness wants the one loopback port it chose.
* **Layers at /opt and a clean interpreter**: MiniStack runs each Python
  function with its own interpreter (and that interpreter's site-packages),
  with each layer in a temporary folder. Functions start here through
  :mod:`emulator.lambda_launcher` instead, which mounts the layers read-only
  on ``/opt`` of a private mount namespace and starts the runtime's Python
  without any site-packages, as on Lambda.

Only the standard library and MiniStack are importable here: this module runs
in MiniStack's virtual environment, not the project's.
"""

from __future__ import annotations

import contextvars
import os
import stat
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "bridge_custom_domains",
    "bridge_identity_sources",
    "launch_functions_through",
    "listen_on_one_port",
    "main",
]

_request: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("vmregistry_request", default=None)
_domain_path: contextvars.ContextVar[str | None] = contextvars.ContextVar("vmregistry_domain_path", default=None)
"""The path a client sent to a custom domain, while its request is executed (``None``: not through one)."""


def bridge_identity_sources(apigw: Any) -> None:
    """Resolve ``context.httpMethod``/``context.path`` identity sources as API Gateway does."""
    authorize = apigw._authorize_request_v1
    resolve = apigw._request_identity_sources

    async def authorize_with_context(
        api_id: str, stage_name: str, method_obj: Any, method: str, request_path: str, *args: Any
    ) -> Any:
        # $context.path is the path as the client sent it, stage included.
        # (through a custom domain: the path sent to that domain, without the stage)
        path = _domain_path.get() or f"/{stage_name}{request_path}"
        values = {"context.httpMethod": method, "context.path": path}
        token = _request.set(values)
        try:
            return await authorize(api_id, stage_name, method_obj, method, request_path, *args)
        finally:
            _request.reset(token)

    def sources_with_context(identity_source: str, *args: Any) -> tuple[bool, list[str]]:
        present, values = resolve(identity_source, *args)
        known = _request.get()
        if known is None:
            return present, values
        names = [raw.strip() for raw in (identity_source or "").split(",") if raw.strip()]
        values = [known.get(name, value) for name, value in zip(names, values, strict=True)]
        return all(values), values

    apigw._authorize_request_v1 = authorize_with_context
    apigw._request_identity_sources = sources_with_context


def bridge_custom_domains(app: Any, apigw: Any) -> None:
    """Serve a registered custom domain's paths from its API, and tell the function the path as sent."""
    parse, resolve = app._parse_execute_api_url, app._resolve_custom_domain_request
    ecr, execute = app._handle_ecr_registry_request, app._handle_execute_api_request
    build_event = apigw._build_lambda_event_v1

    def custom_domain(host: str, path: str) -> bool:
        return parse(host, path) is None and resolve(host, path) is not None

    async def ecr_elsewhere(method: str, path: str, headers: dict[str, Any], *args: Any) -> Any:
        # ECR's registry API has a host of its own in AWS; MiniStack serves it on every host.
        return None if custom_domain(headers.get("host", ""), path) else await ecr(method, path, headers, *args)

    async def execute_with_domain_path(host: str, path: str, *args: Any, **kwargs: Any) -> Any:
        token = _domain_path.set(path if custom_domain(host, path) else None)
        try:
            return await execute(host, path, *args, **kwargs)
        finally:
            _domain_path.reset(token)

    def event_with_domain_path(*args: Any, **kwargs: Any) -> Any:
        event = build_event(*args, **kwargs)
        if (path := _domain_path.get()) is not None:
            event["requestContext"]["path"] = path
        return event

    app._handle_ecr_registry_request = ecr_elsewhere
    app._handle_execute_api_request = execute_with_domain_path
    apigw._build_lambda_event_v1 = event_with_domain_path


def launch_functions_through(lambda_runtime: Any, launcher: str) -> None:
    """Start every Python function with ``launcher`` instead of MiniStack's own interpreter."""
    detect = lambda_runtime._detect_runtime_binary

    def detect_with_launcher(runtime: str) -> tuple[str, str]:
        binary, script = detect(runtime)
        return (launcher, script) if runtime.startswith("python") else (binary, script)

    lambda_runtime._detect_runtime_binary = detect_with_launcher


def listen_on_one_port(app: Any) -> None:
    """Never take port 443 besides the configured one."""
    bindable = app._port_is_bindable

    def bindable_except_443(host: str, port: int) -> bool:
        return port != 443 and bool(bindable(host, port))

    app._port_is_bindable = bindable_except_443


def _write_launcher(state: Path) -> str:
    """A one-line executable: MiniStack's Popen takes a single program, without arguments."""
    script = state / "lambda-python"
    module = Path(__file__).resolve().with_name("lambda_launcher.py")
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I "{module}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(script)


def main() -> None:
    state = Path(os.environ.get("VMREGISTRY_EMULATOR_STATE", ".")).resolve()
    state.mkdir(parents=True, exist_ok=True)
    from ministack import app  # type: ignore[import-not-found]
    from ministack.core import lambda_runtime  # type: ignore[import-not-found]
    from ministack.services import apigateway_v1  # type: ignore[import-not-found]

    bridge_identity_sources(apigateway_v1)
    bridge_custom_domains(app, apigateway_v1)
    launch_functions_through(lambda_runtime, _write_launcher(state))
    listen_on_one_port(app)
    sys.argv = [sys.argv[0]]
    app.main()


if __name__ == "__main__":
    main()
