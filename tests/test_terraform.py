"""The Terraform deployment, read statically (no init, no plan: no network here).

Every .tf file is parsed with python-hcl2 and checked against the code it deploys:
entry points, settings, invokers, queue and subscription policies, and the log fields
the log-based metrics extract.
"""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from shared.config.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TERRAFORM = REPO / "terraform"
FUNCTIONS = REPO / "functions"
ENTRY_POINTS = {"webhook_receiver", "outbound_sync", "retry_worker", "reconciler", "sync_api"}
INTERNAL = ENTRY_POINTS - {"webhook_receiver"}
_OPTIONS = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)

# Settings a function cannot run without in production.
REQUIRED_EVERYWHERE = {
    "GCP_PROJECT",
    "GCP_REGION",
    "INSTANCE_CONNECTION_NAME",
    "DB_USER",
    "DB_NAME",
    "DB_IAM_AUTH",
    "HUBSPOT_ACCESS_TOKEN",
    "HUBSPOT_APP_ID",
    "ENCRYPTION_KEY",
    "TASKS_QUEUE",
    "TASKS_SERVICE_ACCOUNT",
    "RETRY_WORKER_URL",
}
REQUIRED_BY_FUNCTION = {
    "webhook_receiver": {"HUBSPOT_CLIENT_SECRET", "WEBHOOK_PUBLIC_URL"},
    "outbound_sync": {"OIDC_AUDIENCE", "OIDC_ALLOWED_EMAILS"},
    "retry_worker": {"OIDC_AUDIENCE", "OIDC_ALLOWED_EMAILS"},
    "reconciler": {"OIDC_AUDIENCE", "OIDC_ALLOWED_EMAILS"},
    "sync_api": {"OIDC_AUDIENCE", "OIDC_ALLOWED_EMAILS", "SYNC_API_TOKEN"},
}


@cache
def parsed() -> dict[str, Any]:
    """All .tf files merged: resources by type and name, data, locals, variables."""
    merged: dict[str, Any] = {"resource": {}, "data": {}, "locals": {}, "variable": {}}
    for path in sorted(TERRAFORM.glob("*.tf")):
        document = hcl2.load(io.StringIO(path.read_text()), serialization_options=_OPTIONS)
        for block in document.get("resource", []) + document.get("data", []):
            kind = "resource" if block in document.get("resource", []) else "data"
            for rtype, named in block.items():
                merged[kind].setdefault(rtype, {}).update(named)
        for block in document.get("locals", []):
            merged["locals"].update(block)
        for block in document.get("variable", []):
            merged["variable"].update(block)
    return merged


def resource(rtype: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = parsed()["resource"][rtype][name]
    return body


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested block (hcl2 gives a one-element list)."""
    value = body[name]
    found: dict[str, Any] = value[0] if isinstance(value, list) else value
    return found


def terraform_functions() -> dict[str, dict[str, Any]]:
    """Entry point -> settings of every function Terraform deploys (empty if none)."""
    if not TERRAFORM.is_dir() or not list(TERRAFORM.glob("*.tf")):
        return {}
    functions: dict[str, dict[str, Any]] = parsed()["locals"].get("functions", {})
    return functions


def function_env(name: str) -> set[str]:
    """Every environment variable (plain and secret) the function ``name`` gets."""
    local = parsed()["locals"]
    service = block(resource("google_cloudfunctions2_function", "function"), "service_config")
    expression = service["environment_variables"]
    inline = re.findall(r"\{([^{}]*)\}\)\}$", expression)
    names = set(local["common_env"]) | set(local["function_env"][name])
    names |= {m for part in inline for m in re.findall(r"([A-Z][A-Z0-9_]+)\s*=", part)}
    names |= set(local["functions"][name]["secrets"])
    return names


def variable_default(name: str) -> Any:
    return parsed()["variable"][name]["default"]


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"not formatted: {result.stdout}{result.stderr}"


def test_five_gen2_functions_with_their_entry_points() -> None:
    assert set(terraform_functions()) == ENTRY_POINTS
    function = resource("google_cloudfunctions2_function", "function")
    assert function["for_each"] == "${local.functions}"
    build = block(function, "build_config")
    assert build["entry_point"] == "${each.key}"
    assert build["runtime"] == "python311"
    service = block(function, "service_config")
    assert service["max_instance_count"] == "${var.max_instances[each.key]}"
    assert service["max_instance_request_concurrency"] == 1
    assert set(variable_default("max_instances")) == ENTRY_POINTS


def test_timeouts_fit_their_triggers() -> None:
    functions = terraform_functions()
    assert functions["reconciler"]["timeout"] == 3600  # the gen2 HTTP maximum
    assert functions["webhook_receiver"]["timeout"] <= 60
    subscription = resource("google_pubsub_subscription", "outbound")
    assert subscription["ack_deadline_seconds"] == "${local.functions.outbound_sync.timeout}"
    assert functions["outbound_sync"]["timeout"] <= 600  # push ack deadline maximum
    job = resource("google_cloud_scheduler_job", "reconcile")
    assert int(job["attempt_deadline"].rstrip("s")) <= 1800
    assert job["time_zone"] == "Etc/UTC"
    assert "oidc_token" in block(job, "http_target")
    assert set(block(job, "retry_config")) >= {
        "retry_count",
        "max_retry_duration",
        "min_backoff_duration",
        "max_backoff_duration",
        "max_doublings",
    }


def test_every_entry_point_is_an_http_function_in_its_main_py() -> None:
    missing = []
    for name in sorted(ENTRY_POINTS):
        main = FUNCTIONS / name / "main.py"
        if not main.is_file():
            missing.append(f"functions/{name}/main.py")
            continue
        tree = ast.parse(main.read_text())
        defined = {
            node.name: [ast.unparse(d) for d in node.decorator_list]
            for node in tree.body
            if isinstance(node, ast.FunctionDef)
        }
        if not any("functions_framework.http" in d for d in defined.get(name, [])):
            missing.append(f"@functions_framework.http def {name} in functions/{name}/main.py")
    assert not missing, missing


def test_every_environment_variable_is_a_setting() -> None:
    settings = {name.upper() for name in Settings.model_fields}
    for name in ENTRY_POINTS:
        unknown = function_env(name) - settings
        assert not unknown, f"{name}: {sorted(unknown)} are not Settings fields"
    assert set(parsed()["locals"]["secret_ids"]) <= settings


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_required_settings_are_set(name: str) -> None:
    missing = (REQUIRED_EVERYWHERE | REQUIRED_BY_FUNCTION[name]) - function_env(name)
    assert not missing, f"{name} lacks {sorted(missing)}"


def test_secrets_are_secret_env_vars_with_per_function_grants() -> None:
    local = parsed()["locals"]
    secret_fields = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    for name, function in terraform_functions().items():
        secrets = set(function["secrets"])
        assert secrets <= set(local["secret_ids"]), name
        assert secrets <= secret_fields, f"{name}: {secrets - secret_fields} are not SecretStr"
        plain = set(local["common_env"]) | set(local["function_env"][name])
        assert not plain & secret_fields, f"{name} passes a secret as a plain variable"
    accessor = resource("google_secret_manager_secret_iam_member", "accessor")
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert "local.function_secrets" in accessor["for_each"]


def test_only_the_webhook_is_public() -> None:
    invokers = parsed()["locals"]["invoker_members"]
    assert "allUsers" in json.dumps(invokers)
    assert set(invokers) == ENTRY_POINTS
    public = [
        name
        for name, members in invokers.items()
        if "allUsers" in json.dumps(members) or "allAuthenticatedUsers" in json.dumps(members)
    ]
    assert public == ["webhook_receiver"], invokers
    assert invokers["sync_api"] == "${var.api_invokers}"
    validation = block(parsed()["variable"]["api_invokers"], "validation")
    assert "allUsers" in validation["condition"]
    # No resource grants to the public directly, outside that one map.
    assert "allUsers" not in json.dumps(parsed()["resource"])
    assert "allAuthenticatedUsers" not in json.dumps(parsed()["resource"])
    invoker = resource("google_cloud_run_v2_service_iam_member", "invoker")
    assert invoker["role"] == "roles/run.invoker"
    assert "local.invoker_members" in invoker["for_each"]


def test_internal_callers_are_the_trigger_service_accounts() -> None:
    emails = parsed()["locals"]["invoker_emails"]
    assert set(emails) == INTERNAL
    assert emails["outbound_sync"] == ["${google_service_account.pubsub_push.email}"]
    assert emails["retry_worker"] == ["${google_service_account.tasks.email}"]
    assert emails["reconciler"] == ["${google_service_account.scheduler.email}"]


def test_tasks_queue_sets_every_retry_and_rate_field() -> None:
    queue = resource("google_cloud_tasks_queue", "retry")
    assert set(block(queue, "retry_config")) == {
        "max_attempts",
        "max_retry_duration",
        "min_backoff",
        "max_backoff",
        "max_doublings",
    }
    # max_burst_size is output only: the service derives it.
    assert set(block(queue, "rate_limits")) == {
        "max_dispatches_per_second",
        "max_concurrent_dispatches",
    }
    assert block(queue, "rate_limits")["max_concurrent_dispatches"] == (
        '${var.max_instances["retry_worker"]}'
    )
    assert variable_default("tasks_max_dispatches_per_second") <= 500


def test_push_subscription_has_oidc_retry_and_dead_letter() -> None:
    subscription = resource("google_pubsub_subscription", "outbound")
    push = block(subscription, "push_config")
    oidc = block(push, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.pubsub_push.email}"
    assert oidc["audience"] == push["push_endpoint"]
    assert set(block(subscription, "retry_policy")) == {"minimum_backoff", "maximum_backoff"}
    dead_letter = block(subscription, "dead_letter_policy")
    assert dead_letter["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert "dead_letter" in parsed()["resource"]["google_pubsub_subscription"]
    publisher = resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    subscriber = resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert publisher["role"] == "roles/pubsub.publisher"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert publisher["member"] == subscriber["member"] == "${local.pubsub_service_agent}"


def test_default_capacity_fits_the_database_connection_budget() -> None:
    used = sum(variable_default("max_instances").values()) * variable_default("db_pool_size")
    budget = variable_default("db_max_connections") - variable_default("db_reserved_connections")
    assert used <= budget
    budget_check = resource("terraform_data", "db_connection_budget")
    assert "connections_used <= local.connection_budget" in json.dumps(budget_check)


def test_log_metrics_extract_fields_the_code_writes(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.observability import configure_logging, log_gauge, log_operation
    from shared.observability.operation import (
        BUDGET_USED_METRIC,
        QUEUE_DEPTH_METRIC,
        Conflict,
    )

    configure_logging("INFO")
    capsys.readouterr()
    log_operation(
        entity_type="customer",
        direction="WARP_TO_HUBSPOT",
        operation="UPDATE",
        entity_id="c",
        outcome="failed",
        duration_ms=5,
        conflicts=[Conflict("name", "WARP_WINS")],
        error=RuntimeError("x"),
    )
    log_gauge(QUEUE_DEPTH_METRIC, 3)
    log_gauge(BUDGET_USED_METRIC, 10)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    events = {line["event"]: line for line in lines if line["event"] != "gauge"}
    gauges = {line["metric"]: line for line in lines if line["event"] == "gauge"}

    metrics = parsed()["locals"]["log_metrics"]
    for key, metric in metrics.items():
        filters = dict(re.findall(r'jsonPayload\.(\w+)="([^"]+)"', metric["filter"]))
        if filters["event"] == "gauge":
            line = gauges[filters["metric"]]
        else:
            line = events[filters["event"]]
        for field, expected in filters.items():
            assert str(line[field]) == expected, (key, field)
        extracted = set(metric["labels"].values())
        if metric["value"]:
            extracted.add(re.fullmatch(r"EXTRACT\(jsonPayload\.(\w+)\)", metric["value"])[1])  # type: ignore[index]
        missing = extracted - set(line)
        assert not missing, f"{key} extracts {missing}, not in {sorted(line)}"


def test_outputs_give_the_webhook_and_api_urls() -> None:
    text = (TERRAFORM / "outputs.tf").read_text()
    outputs = hcl2.load(io.StringIO(text), serialization_options=_OPTIONS)["output"]
    names = {name for block in outputs for name in block}
    assert {"webhook_url", "api_url"} <= names


if __name__ == "__main__":  # pragma: no cover - a quick look at what the tests see
    json.dump(terraform_functions(), sys.stdout, indent=2)


def test_the_nightly_scheduler_body_is_a_run_the_reconciler_accepts() -> None:
    from shared.reconcile import RunRequest

    body = parsed()["locals"]["nightly_reconcile_body"]
    job = block(resource("google_cloud_scheduler_job", "reconcile"), "http_target")
    assert "local.nightly_reconcile_body" in job["body"]
    request = RunRequest.from_body(body, idempotency_key="scheduler:t", triggered_by="scheduler")
    assert (request.run_type, request.entity_type) == ("FULL", "customer")
