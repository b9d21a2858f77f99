"""Structured logging for Cloud Logging: JSON lines, request context, sync-operation lines.

Adapters call :func:`configure_logging` once at import and wrap each invocation in
:func:`request_context`; the engine logs each sync with :func:`log_operation`.
Everything else logs through ``logging.getLogger("warp_hubspot_sync.<area>")`` with
``extra={"fields": {...}}``.
"""

from shared.observability.context import RequestContext, bind, current_context, request_context
from shared.observability.logging import LOGGER_NAMESPACE, CloudLoggingHandler, configure_logging
from shared.observability.operation import (
    BUDGET_USED_METRIC,
    QUEUE_DEPTH_METRIC,
    Conflict,
    SyncOperation,
    log_gauge,
    log_operation,
    sync_operation,
)
from shared.observability.redaction import REDACTED, allow_fields

__all__ = [
    "BUDGET_USED_METRIC",
    "LOGGER_NAMESPACE",
    "QUEUE_DEPTH_METRIC",
    "REDACTED",
    "CloudLoggingHandler",
    "Conflict",
    "RequestContext",
    "SyncOperation",
    "allow_fields",
    "bind",
    "configure_logging",
    "current_context",
    "log_gauge",
    "log_operation",
    "request_context",
    "sync_operation",
]
