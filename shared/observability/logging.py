"""One JSON line per log record, in the shape Cloud Logging lifts into a LogEntry.

The handler looks ``sys.stdout`` up at every emit: functions-framework swaps stdout per
request when ``LOG_EXECUTION_ID`` is set, to merge the execution id into each JSON line,
and a stream cached at import time would miss it. The ``warp_hubspot_sync`` logger does
not propagate, because the framework also installs a root handler that would print every
record a second time.

Line shape (``jsonPayload`` keys other than the special ``logging.googleapis.com/*``)::

    severity, message, time, logger, logging.googleapis.com/sourceLocation,
    function, cold_start, correlation_id, logging.googleapis.com/trace,
    logging.googleapis.com/spanId, logging.googleapis.com/trace_sampled,
    <request-context fields>, <record fields>, stack_trace

Everything from the context and ``extra={"fields": {...}}`` passes through
:mod:`shared.observability.redaction`; the message is scrubbed of e-mail addresses and
credentials, and the stack trace names each exception without its outside content
(:func:`~shared.observability.redaction.describe_error`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from shared.observability.context import current_context, default_function_name
from shared.observability.redaction import redact, redact_mapping, safe_traceback, scrub_text

LOGGER_NAMESPACE = "warp_hubspot_sync"
TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
SOURCE_KEY = "logging.googleapis.com/sourceLocation"

_RESERVED = frozenset(
    {"severity", "message", "time", "logger", "stack_trace", TRACE_KEY, SPAN_KEY, SAMPLED_KEY}
)


def severity(levelno: int) -> str:
    """Cloud Logging severity for a Python level number (custom levels round down)."""
    for threshold, name in (
        (logging.CRITICAL, "CRITICAL"),
        (logging.ERROR, "ERROR"),
        (logging.WARNING, "WARNING"),
        (logging.INFO, "INFO"),
        (logging.DEBUG, "DEBUG"),
    ):
        if levelno >= threshold:
            return name
    return "DEFAULT"


def project_id() -> str | None:
    """The project trace ids are qualified with (``GCP_PROJECT``, else ``GOOGLE_CLOUD_PROJECT``)."""
    return os.environ.get("GCP_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT") or None


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def build_entry(record: logging.LogRecord) -> dict[str, Any]:
    """The JSON object written for ``record`` (see the module doc for the keys)."""
    entry: dict[str, Any] = {
        "severity": severity(record.levelno),
        "message": scrub_text(record.getMessage()),
        "time": _timestamp(record.created),
        "logger": record.name,
        SOURCE_KEY: {
            "file": record.pathname,
            "line": str(record.lineno),
            "function": record.funcName,
        },
    }
    context = current_context()
    function = context.function if context else default_function_name()
    if function:
        entry["function"] = function
    if context is not None:
        entry["cold_start"] = context.cold_start
        if context.correlation_id:
            entry["correlation_id"] = scrub_text(context.correlation_id)
        if context.trace is not None:
            project = project_id()
            if project:
                entry[TRACE_KEY] = f"projects/{project}/traces/{context.trace.trace_id}"
            else:
                entry["trace_id"] = context.trace.trace_id
            if context.trace.span_id:
                entry[SPAN_KEY] = context.trace.span_id
            if context.trace.sampled is not None:
                entry[SAMPLED_KEY] = context.trace.sampled
        _merge(entry, redact_mapping(context.fields))
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        _merge(entry, redact_mapping(fields))
    elif fields is not None:
        entry["fields_value"] = redact(fields)
    if record.exc_info and record.exc_info[1] is not None:
        # Error Reporting reads jsonPayload.stack_trace first. Exception texts can quote
        # what a party sent (PostgreSQL's detail quoted event JSON): safe_traceback keeps
        # frames and types and only the words redaction allows.
        entry["stack_trace"] = scrub_text(safe_traceback(record.exc_info[1]))
    elif record.stack_info:
        entry["stack_trace"] = scrub_text(record.stack_info)
    return entry


def _merge(entry: dict[str, Any], fields: dict[str, Any]) -> None:
    # A field may not overwrite what Cloud Logging interprets; keep it under another name.
    for key, value in fields.items():
        entry[f"field_{key}" if key in _RESERVED or key.startswith("logging.") else key] = value


class CloudLoggingHandler(logging.Handler):
    """Writes each record as one JSON line to the *current* ``sys.stdout``."""

    def emit(self, record: logging.LogRecord) -> None:
        """Format and write one line; a failure to format is reported, never raised."""
        try:
            line = json.dumps(build_entry(record), default=str, ensure_ascii=False)
            stream = sys.stdout
            # Two writes on purpose: functions-framework's per-request stdout wrapper
            # parses each write as one JSON document and drops a lone "\n".
            stream.write(line)
            stream.write("\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: int | str | None = None) -> logging.Logger:
    """Install the JSON handler on the ``warp_hubspot_sync`` logger; safe to call repeatedly.

    ``level`` defaults to ``LOG_LEVEL`` (else INFO). Returns the namespace logger.
    """
    logger = logging.getLogger(LOGGER_NAMESPACE)
    chosen = level if level is not None else os.environ.get("LOG_LEVEL", "INFO")
    logger.setLevel(chosen.upper() if isinstance(chosen, str) else chosen)
    logger.propagate = False
    if not any(isinstance(h, CloudLoggingHandler) for h in logger.handlers):
        logger.addHandler(CloudLoggingHandler())
    return logger
