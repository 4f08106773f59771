"""Logger, Tracer and Metrics: created once, shared by every handler module.

Powertools reads its configuration from the environment (``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_TRACE_DISABLED``,
``POWERTOOLS_METRICS_DISABLED``, ``POWERTOOLS_LOG_LEVEL``), which the stack
sets for Lambda and the local server sets for itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths

__all__ = ["instrument", "logger", "metrics", "metrics_enabled", "tracer"]

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "vmregistry")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "VmRegistry")

logger = Logger()
tracer = Tracer()
metrics = Metrics()

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def metrics_enabled() -> bool:
    """Metrics go to CloudWatch from Lambda; the local server switches them off."""
    return os.environ.get("POWERTOOLS_METRICS_DISABLED", "").strip().lower() not in {"1", "true", "yes", "on"}


def instrument(handler: Handler) -> Handler:
    """Apply the standard Powertools decorators to a Lambda entry point."""
    measured = metrics.log_metrics(handler)

    def entry(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # Without metrics there is nothing to flush, and log_metrics would warn on every call.
        return measured(event, context) if metrics_enabled() else handler(event, context)

    traced = tracer.capture_lambda_handler(entry)
    return logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)(traced)
