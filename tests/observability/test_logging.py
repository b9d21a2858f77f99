"""The JSON log lines: Cloud Logging shape, trace parsing, redaction, one line per record."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import DatabaseUnavailableError
from shared.observability import (
    REDACTED,
    CloudLoggingHandler,
    Conflict,
    allow_fields,
    bind,
    configure_logging,
    log_gauge,
    log_operation,
    request_context,
    sync_operation,
)
from shared.observability import context as context_module
from shared.observability.context import (
    correlation_from_headers,
    parse_cloud_trace_context,
    parse_traceparent,
    trace_from_headers,
)
from shared.observability.redaction import ALLOWED_FIELDS, is_sensitive_key, scrub_text

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class Captured:
    """The JSON lines written to the sys.stdout that pytest's capsys installed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.capsys.readouterr().out.splitlines()]


@pytest.fixture
def stdout(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Captured:
    """capsys swaps sys.stdout after the handler exists: it must find the current stream."""
    configure_logging("DEBUG")
    monkeypatch.setenv("GCP_PROJECT", "proj-1")
    monkeypatch.delenv("K_SERVICE", raising=False)
    monkeypatch.delenv("FUNCTION_TARGET", raising=False)
    return Captured(capsys)


def lines(captured: Captured) -> list[dict[str, Any]]:
    return captured.lines()


def test_line_has_cloud_logging_shape(stdout: Captured) -> None:
    log = logging.getLogger("warp_hubspot_sync.test")
    log.warning("hello %s", "world", extra={"fields": {"customer_id": "c-1", "attempt": 2}})
    [entry] = lines(stdout)
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hello world"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert entry["customer_id"] == "c-1" and entry["attempt"] == 2
    source = entry["logging.googleapis.com/sourceLocation"]
    assert source["file"].endswith("test_logging.py")
    assert source["function"] == "test_line_has_cloud_logging_shape"
    assert "cold_start" not in entry  # no invocation scope


def test_configure_logging_is_idempotent_and_does_not_propagate() -> None:
    first = configure_logging("INFO")
    second = configure_logging("INFO")
    assert first is second and first.propagate is False
    assert sum(isinstance(h, CloudLoggingHandler) for h in first.handlers) == 1


def test_no_second_line_when_root_has_a_handler(stdout: Captured) -> None:
    # functions-framework installs a root handler; a propagating record would print twice.
    root_handler = logging.StreamHandler(sys.stdout)
    logging.getLogger().addHandler(root_handler)
    try:
        logging.getLogger("warp_hubspot_sync.engine").info("once")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert [e["message"] for e in lines(stdout)] == ["once"]


def test_request_context_adds_trace_function_and_correlation(stdout: Captured) -> None:
    headers = {
        "X-Cloud-Trace-Context": f"{TRACE}/1;o=1",
        "X-CloudTasks-TaskName": "task-abc",
    }
    with request_context(function="retry_worker", headers=headers, customer_id="c-9"):
        logging.getLogger("warp_hubspot_sync.tasks").info("working")
    [entry] = lines(stdout)
    assert entry["logging.googleapis.com/trace"] == f"projects/proj-1/traces/{TRACE}"
    assert entry["logging.googleapis.com/spanId"] == "0000000000000001"
    assert entry["logging.googleapis.com/trace_sampled"] is True
    assert entry["function"] == "retry_worker"
    assert entry["correlation_id"] == "task-abc"
    assert entry["customer_id"] == "c-9"


def test_context_ends_with_its_scope_and_bind_adds_fields(stdout: Captured) -> None:
    log = logging.getLogger("warp_hubspot_sync.t")
    with request_context(function="outbound_sync"):
        bind(correlation_id="msg-42", hubspot_company_id="123")
        log.info("inside")
    log.info("outside")
    inside, outside = lines(stdout)
    assert inside["correlation_id"] == "msg-42" and inside["hubspot_company_id"] == "123"
    assert "correlation_id" not in outside and "hubspot_company_id" not in outside


def test_decorator_reads_the_request_headers_per_call(stdout: Captured) -> None:
    class FakeRequest:  # the decorator only reads .headers from the first argument
        def __init__(self, task: str) -> None:
            self.headers = {
                "X-CloudTasks-TaskName": task,
                "traceparent": f"00-{TRACE}-00f067aa0ba902b7-00",
            }

    @request_context(function="retry_worker")
    def retry_worker(request: FakeRequest) -> str:
        logging.getLogger("warp_hubspot_sync.t").info("run")
        return "ok"

    assert retry_worker.__name__ == "retry_worker"  # functions-framework registers by name
    retry_worker(FakeRequest("t1"))
    retry_worker(FakeRequest("t2"))
    first, second = lines(stdout)
    assert (first["correlation_id"], second["correlation_id"]) == ("t1", "t2")
    assert first["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert first["logging.googleapis.com/trace_sampled"] is False


def test_cold_start_true_only_for_the_first_invocation(
    stdout: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context_module, "_cold_start_pending", True)
    log = logging.getLogger("warp_hubspot_sync.t")
    for _ in range(3):
        with request_context(function="sync_api"):
            log.info("call")
    assert [e["cold_start"] for e in lines(stdout)] == [True, False, False]


def test_function_name_defaults_to_k_service(
    stdout: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K_SERVICE", "webhook-receiver")
    with request_context():
        logging.getLogger("warp_hubspot_sync.t").info("x")
    assert lines(stdout)[0]["function"] == "webhook-receiver"


def test_exception_has_stack_trace_without_personal_data(stdout: Captured) -> None:
    try:
        raise ValueError("contact jane@example.com already exists")
    except ValueError:
        logging.getLogger("warp_hubspot_sync.t").exception("create failed")
    [entry] = lines(stdout)
    assert entry["severity"] == "ERROR"
    assert "Traceback" in entry["stack_trace"] and "ValueError" in entry["stack_trace"]
    assert "jane@example.com" not in json.dumps(entry)


def test_redaction_masks_secrets_and_personal_fields(stdout: Captured) -> None:
    fields = {
        "hubspot_access_token": "pat-na1-xyz",
        "Authorization": "Bearer abc",
        "client_secret": "s3",
        "api_key": "k",
        "email": "a@b.co",
        "firstName": "Ann",
        "contact": {"name": "Ann", "phone": "+4930"},
        "new_value": "Ann Ltd",
        "payload": {"anything": 1},
        "contact_id": "77",
        "field_name": "email",
        "idempotency_key": "sub:1:evt:2",
        "note": "mail a@b.co with Bearer t0k3n",
        "nested": {"password": "p", "count": 3},
    }
    logging.getLogger("warp_hubspot_sync.t").info("x", extra={"fields": fields})
    [entry] = lines(stdout)
    for key in ("hubspot_access_token", "Authorization", "client_secret", "api_key", "email"):
        assert entry[key] == REDACTED, key
    for key in ("firstName", "contact", "new_value", "payload"):
        assert entry[key] == REDACTED, key
    assert entry["contact_id"] == "77" and entry["field_name"] == "email"
    assert entry["idempotency_key"] == "sub:1:evt:2"
    assert entry["note"] == f"mail {REDACTED} with Bearer {REDACTED}"
    assert entry["nested"] == {"password": REDACTED, "count": 3}
    for secret in ("pat-na1-xyz", "abc", "s3", "a@b.co", "Ann", "+4930", "t0k3n"):
        assert secret not in json.dumps(entry)


def test_allow_fields_is_the_explicit_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.observability.redaction.ALLOWED_FIELDS", set(ALLOWED_FIELDS))
    assert is_sensitive_key("tokens_key")
    allow_fields("tokens_key")
    assert not is_sensitive_key("tokens_key")


@given(st.emails())
def test_scrub_text_removes_any_email(address: str) -> None:
    assert address not in scrub_text(f"user {address} failed")


def test_reserved_keys_cannot_be_overwritten_by_fields(stdout: Captured) -> None:
    logging.getLogger("warp_hubspot_sync.t").info(
        "real", extra={"fields": {"severity": "DEBUG", "message": "fake"}}
    )
    [entry] = lines(stdout)
    assert entry["severity"] == "INFO" and entry["message"] == "real"
    assert entry["field_severity"] == "DEBUG" and entry["field_message"] == "fake"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{TRACE}/12345;o=1", (TRACE, f"{12345:016x}", True)),
        (f"{TRACE}/12345", (TRACE, f"{12345:016x}", None)),
        (f"{TRACE};o=0", (TRACE, None, False)),
        (TRACE.upper(), (TRACE, None, None)),
        ("0" * 32 + "/1;o=1", None),
        ("not-a-trace", None),
        (f"{TRACE}/{2**64};o=1", (TRACE, None, True)),
    ],
)
def test_parse_cloud_trace_context(header: str, expected: tuple[Any, ...] | None) -> None:
    parsed = parse_cloud_trace_context(header)
    got = None if parsed is None else (parsed.trace_id, parsed.span_id, parsed.sampled)
    assert got == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-00f067aa0ba902b7-01", (TRACE, "00f067aa0ba902b7", True)),
        (f"00-{TRACE}-00f067aa0ba902b7-00", (TRACE, "00f067aa0ba902b7", False)),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        ("00-short-00f067aa0ba902b7-01", None),
    ],
)
def test_parse_traceparent(header: str, expected: tuple[Any, ...] | None) -> None:
    parsed = parse_traceparent(header)
    got = None if parsed is None else (parsed.trace_id, parsed.span_id, parsed.sampled)
    assert got == expected


def test_traceparent_wins_and_bad_one_falls_back() -> None:
    other = "a" * 32
    both = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "X-Cloud-Trace-Context": f"{other}/5"}
    assert trace_from_headers(both).trace_id == TRACE  # type: ignore[union-attr]
    broken = {"traceparent": "garbage", "x-cloud-trace-context": f"{other}/5"}
    assert trace_from_headers(broken).trace_id == other  # type: ignore[union-attr]
    assert trace_from_headers({}) is None


def test_correlation_from_scheduler_and_execution_id() -> None:
    assert (
        correlation_from_headers(
            {
                "X-CloudScheduler-JobName": "nightly",
                "X-CloudScheduler-ScheduleTime": "2026-01-01T03:00:00Z",
            }
        )
        == "nightly@2026-01-01T03:00:00Z"
    )
    assert correlation_from_headers({"Function-Execution-Id": "exec1"}) == "exec1"
    assert correlation_from_headers(None) is None


def test_sync_operation_success_line(stdout: Captured) -> None:
    with sync_operation("customer", "WARP_TO_HUBSPOT", "UPDATE", "c-1") as op:
        op.add_fields("name", "domain", "name")
        op.add_conflict("domain", "WARP_WINS")
    operation, conflict = lines(stdout)
    assert operation["event"] == "sync_operation" and operation["outcome"] == "success"
    assert operation["fields"] == ["domain", "name"]
    assert operation["conflicts"] == [
        {"field": "domain", "resolution": "WARP_WINS", "kind": "edited"}
    ]
    assert operation["duration_ms"] >= 0 and operation["duration_seconds"] >= 0
    assert (operation["direction"], operation["entity_type"]) == ("WARP_TO_HUBSPOT", "customer")
    assert conflict["event"] == "sync_conflict"
    assert (conflict["field"], conflict["resolution"]) == ("domain", "WARP_WINS")


def test_sync_operation_manual_conflict_and_skip(stdout: Captured) -> None:
    with sync_operation("customer", "HUBSPOT_TO_WARP", "UPDATE", "c-1") as op:
        op.add_conflict("phone", "MANUAL")
    with sync_operation("customer", "HUBSPOT_TO_WARP", "UPDATE", "c-1") as op:
        op.skip("echo")
    outcomes = [
        (e["outcome"], e.get("reason")) for e in lines(stdout) if e["event"] == "sync_operation"
    ]
    assert outcomes == [("conflict", None), ("skipped", "echo")]


def test_sync_operation_failure_is_logged_and_reraised(stdout: Captured) -> None:
    with (
        pytest.raises(DatabaseUnavailableError),
        sync_operation("customer", "WARP_TO_HUBSPOT", "CREATE", "c-2"),
    ):
        raise DatabaseUnavailableError("down")
    with pytest.raises(KeyError), sync_operation("customer", "WARP_TO_HUBSPOT", "CREATE", "c-3"):
        raise KeyError("x")
    retryable, permanent = lines(stdout)
    assert (retryable["outcome"], retryable["severity"], retryable["retryable"]) == (
        "failed",
        "WARNING",
        True,
    )
    assert retryable["error_type"] == "DatabaseUnavailableError"
    assert (permanent["severity"], permanent["retryable"]) == ("ERROR", False)


def test_log_operation_rejects_unknown_outcome_and_direction() -> None:
    with pytest.raises(ValueError, match="outcome"):
        log_operation(
            entity_type="customer",
            direction="WARP_TO_HUBSPOT",
            operation="UPDATE",
            entity_id="c",
            outcome="ok",
            duration_ms=1,
        )
    with pytest.raises(ValueError, match="direction"), sync_operation("customer", "OUT", "U", "c"):
        pass


def test_log_operation_and_gauge_lines(stdout: Captured) -> None:
    log_operation(
        entity_type="contact",
        direction="BIDIRECTIONAL",
        operation="RECONCILE",
        entity_id="c-5",
        outcome="conflict",
        duration_ms=12.5,
        conflicts=[Conflict("email", "MANUAL")],
    )
    log_gauge("hubspot_sync_queue_depth", 1234, status="QUEUED")
    operation, conflict, gauge = lines(stdout)
    assert operation["duration_ms"] == 12.5 and operation["duration_seconds"] == 0.0125
    assert operation["conflict_count"] == 1 and conflict["field"] == "email"
    assert (gauge["event"], gauge["metric"], gauge["reading"], gauge["status"]) == (
        "gauge",
        "hubspot_sync_queue_depth",
        1234,
        "QUEUED",
    )


def test_functions_framework_stdout_wrapper_keeps_one_json_line(
    stdout: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LOG_EXECUTION_ID=true swaps sys.stdout for this wrapper during each request.
    from functions_framework import execution_id

    context = execution_id.ExecutionContext("exec-1", "99")
    monkeypatch.setattr(execution_id, "_get_current_context", lambda: context)
    target = io.StringIO()
    monkeypatch.setattr(sys, "stdout", execution_id.LoggingHandlerAddExecutionId(target))
    with request_context(function="sync_api"):
        logging.getLogger("warp_hubspot_sync.t").info("wrapped")
    [entry] = [json.loads(line) for line in target.getvalue().splitlines()]
    assert entry["message"] == "wrapped" and entry["severity"] == "INFO"
    assert entry["logging.googleapis.com/labels"] == {"execution_id": "exec-1"}
