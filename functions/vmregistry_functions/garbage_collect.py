"""Worker, not an HTTP route: one garbage collection of the registry's bucket, on a schedule.

An EventBridge rule (``infra/maintenance.py``) invokes it with the deployment's
choices: ``{"dryRun": bool, "deleteUntagged": bool, "graceHours": number}``, and
optionally ``"settleSeconds"`` (default 60, see :mod:`vmregistry.registry.gc`).
Anything missing or malformed in the event means a dry run: a misconfigured
schedule reports, it never deletes. The report goes to the log and, as
``ReclaimedBytes`` (or ``ReclaimableBytes`` in a dry run), to CloudWatch.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from vmregistry import coldstart
from vmregistry.api.observability import logger, metrics, metrics_enabled, tracer
from vmregistry.registry.gc import DEFAULT_GRACE, DEFAULT_SETTLE, collect_garbage
from vmregistry.runtime import get_registry


def _number(value: object) -> float | None:
    valid = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return float(value) if valid else None  # type: ignore[arg-type]


def _choices(event: dict[str, Any]) -> tuple[bool, bool, float, float]:
    """(dry run, delete untagged, grace, settle), in seconds; a malformed number also means a dry run."""
    hours = _number(event.get("graceHours", DEFAULT_GRACE / 3600))
    settle = _number(event.get("settleSeconds", DEFAULT_SETTLE))
    dry_run = event.get("dryRun") is not False or hours is None or settle is None
    grace = DEFAULT_GRACE if hours is None else hours * 3600
    return dry_run, event.get("deleteUntagged") is True, grace, DEFAULT_SETTLE if settle is None else settle


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    dry_run, delete_untagged, grace, settle = _choices(event if isinstance(event, dict) else {})
    report = collect_garbage(
        get_registry().storage, grace=grace, delete_untagged=delete_untagged, dry_run=dry_run, settle=settle
    )
    summary = {
        "dryRun": dry_run,
        "deleteUntagged": delete_untagged,
        "blobsDeleted": len(report.deleted),
        "bytesFreed": report.freed_bytes,
        "manifestsDeleted": len(report.manifests_deleted),
        "linksDeleted": report.links_deleted,
        "linksRestored": report.links_restored,
        "blobsKept": report.kept,
        "spared": report.young,
    }
    logger.info("garbage collection finished", extra=summary)
    if metrics_enabled():
        metrics.add_metric(
            name="ReclaimableBytes" if dry_run else "ReclaimedBytes", unit=MetricUnit.Bytes, value=report.freed_bytes
        )
        metrics.flush_metrics()
    return summary


# The module has loaded: end the init the functions package paused (API handlers, in instrument).
coldstart.resume()
