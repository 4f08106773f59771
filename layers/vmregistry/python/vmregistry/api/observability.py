"""Logger, Tracer and Metrics: created once, shared by every handler module.

Powertools reads its configuration from the environment (``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_TRACE_DISABLED``,
``POWERTOOLS_METRICS_DISABLED``, ``POWERTOOLS_LOG_LEVEL``), which the stack
sets for Lambda and the local server sets for itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths

from vmregistry import coldstart

__all__ = ["NoTracer", "instrument", "logger", "metrics", "metrics_enabled", "tracer", "tracing_enabled"]

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "vmregistry")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "VmRegistry")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
_OFF = {"1", "true", "yes", "on"}


class TracerLike(Protocol):
    def capture_lambda_handler(self, lambda_handler: Handler) -> Handler: ...


class NoTracer:
    """Stands in for Powertools' Tracer while tracing is off.

    Even ``Tracer(disabled=True)`` imports the X-Ray SDK, about half a second of
    cold start (its sampler builds a botocore session at import). With tracing
    off (outside Lambda, or ``POWERTOOLS_TRACE_DISABLED``) that is pure cost.
    """

    def capture_lambda_handler(self, lambda_handler: Handler) -> Handler:
        return lambda_handler


def tracing_enabled() -> bool:
    """Inside Lambda unless switched off, as Powertools itself decides (it never traces elsewhere)."""
    in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    return in_lambda and os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in _OFF


logger = Logger()
tracer: TracerLike = Tracer() if tracing_enabled() else NoTracer()
metrics = Metrics()


def metrics_enabled() -> bool:
    """Metrics go to CloudWatch from Lambda; the local server switches them off."""
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() not in _OFF


def instrument(handler: Handler) -> Handler:
    """Apply the standard Powertools decorators to a Lambda entry point."""
    measured = metrics.log_metrics(handler)

    def entry(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # Without metrics there is nothing to flush, and log_metrics would warn on every call.
        return measured(event, context) if metrics_enabled() else handler(event, context)

    traced = tracer.capture_lambda_handler(entry)
    # Each handler module builds its entry point after its imports: that ends a Lambda init.
    coldstart.resume()
    return logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)(traced)
