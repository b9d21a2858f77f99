"""The Terraform deployment, read statically (no init, no plan: no network here).

Every .tf file is parsed with python-hcl2 and checked against the code it deploys:
entry points, settings, invokers, queue and subscription policies, and the log fields
the log-based metrics extract.
"""

from __future__ import annotations

import ast
import io
import json
import os
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

REPO = Path(__file__).resolve().parents[2]
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
    own = local["function_env"][name]
    # A for-expression (settings given only on a condition) arrives as one string.
    own_names = set(re.findall(r"([A-Z][A-Z0-9_]+)\s*=", own)) if isinstance(own, str) else set(own)
    names = set(local["common_env"]) | own_names
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
    assert invokers["sync_api"] == "${{for m in var.api_invokers : m => m}}"
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


# ---- the dependency graph (what Terraform orders by) ---------------------------------

_REFERENCE = re.compile(r"(?<![\w.])((?:google_\w+|time_sleep|terraform_data)\.\w+)")
_LOCAL = re.compile(r"(?<![\w.])local\.(\w+)")


def _references(value: Any) -> set[str]:
    """Resources an expression names, directly or through the locals it reads."""
    text = json.dumps(value)
    found = set(_REFERENCE.findall(text))
    seen: set[str] = set()
    pending = set(_LOCAL.findall(text))
    while pending:
        name = pending.pop()
        if name in seen or name not in parsed()["locals"]:
            continue
        seen.add(name)
        local_text = json.dumps(parsed()["locals"][name])
        found |= set(_REFERENCE.findall(local_text))
        pending |= set(_LOCAL.findall(local_text))
    return found


def depends_on_transitively(address: str) -> set[str]:
    """Every resource ``address`` (type.name) waits for, through references and depends_on."""
    result: set[str] = set()
    pending = [address]
    while pending:
        rtype, name = pending.pop().split(".")
        for ref in _references(resource(rtype, name)):
            if ref not in result:
                result.add(ref)
                pending.append(ref)
    return result


def all_resources() -> list[str]:
    return [f"{rtype}.{name}" for rtype, named in parsed()["resource"].items() for name in named]


def test_every_google_resource_waits_for_the_apis() -> None:
    # Issue 23 item 4: in an empty project a resource created before its API is
    # enabled fails (service accounts, the Pub/Sub service agent's binding, ...).
    waiting = [
        address
        for address in all_resources()
        if address.startswith("google_")
        and address != "google_project_service.this"
        and "google_project_service.this" not in depends_on_transitively(address)
    ]
    assert not waiting, f"these do not wait for google_project_service.this: {waiting}"


@pytest.mark.parametrize(
    "address", ["google_pubsub_subscription.outbound", "google_cloud_scheduler_job.reconcile"]
)
def test_triggers_wait_for_the_functions_and_their_invokers(address: str) -> None:
    # Issue 23 item 6: a push or a scheduled call before the function and its
    # run.invoker binding exist fails (and push messages head for the dead-letter topic).
    assert "google_cloud_run_v2_service_iam_member.invoker" in depends_on_transitively(address)
    assert "google_cloudfunctions2_function.function" in depends_on_transitively(address)


def test_invoker_for_each_keys_are_known_before_the_service_accounts_exist() -> None:
    # Issue 23 item 1: on providers 6.0-6.12 a new service account's email is unknown
    # at plan time, and for_each refuses unknown keys.
    invoker = resource("google_cloud_run_v2_service_iam_member", "invoker")
    key_expression = invoker["for_each"].split(":")[-1].split("=>")[0]
    assert "pair.key" in key_expression and "member" not in key_expression
    members = parsed()["locals"]["invoker_members"]
    for name in ENTRY_POINTS - {"sync_api"}:
        assert all("${" not in key for key in members[name]), (name, members[name])
    assert members["sync_api"] == "${{for m in var.api_invokers : m => m}}"  # variables are known
    for address in all_resources():
        rtype, name = address.split(".")
        for_each = str(resource(rtype, name).get("for_each", ""))
        keys = [part.split("=>")[0] for part in for_each.split(":")[1:] if "=>" in part]
        assert not any(".email" in k for k in keys), (address, for_each)


def test_alerts_on_log_based_metrics_wait_until_monitoring_knows_them() -> None:
    # Issue 23 item 2: an alert created right after its log-based metric 404s
    # (provider issue #11102); Monitoring says up to 10 minutes.
    wait = resource("time_sleep", "log_metrics_visible")
    assert int(wait["create_duration"].rstrip("s")) >= 600
    assert "google_logging_metric.sync" in wait["triggers"]
    assert parsed()["locals"]["metric_type"] == "${time_sleep.log_metrics_visible.triggers}"
    for name, policy in parsed()["resource"]["google_monitoring_alert_policy"].items():
        if "logging.googleapis.com/user" in json.dumps(policy) or "metric_type" in json.dumps(
            policy
        ):
            assert "time_sleep.log_metrics_visible" in depends_on_transitively(
                f"google_monitoring_alert_policy.{name}"
            ), name


def test_functions_build_as_their_own_service_account_with_the_roles_it_needs() -> None:
    # Issue 23 item 3: new projects and secure-by-default organisations give the
    # default build account no roles (or have none).
    function = resource("google_cloudfunctions2_function", "function")
    assert block(function, "build_config")["service_account"] == (
        "${google_service_account.builder.id}"
    )
    roles = resource("google_project_iam_member", "builder")
    for role in ("logging.logWriter", "artifactregistry.writer", "storage.objectViewer"):
        assert f'"roles/{role}"' in roles["for_each"], role
    assert roles["member"] == "serviceAccount:${google_service_account.builder.email}"
    assert "time_sleep.builder_roles" in depends_on_transitively(
        "google_cloudfunctions2_function.function"
    )
    builder_wait = depends_on_transitively("time_sleep.builder_roles")
    assert "google_project_iam_member.builder" in builder_wait
    services = resource("google_project_service", "this")["for_each"]
    assert "compute.googleapis.com" in services


def test_cloud_sql_roles_and_users_are_in_the_instance_project() -> None:
    # Issue 23 item 5: Cloud SQL checks cloudsql.client / instanceUser in the project
    # that owns the instance, which may be WARP's, not this one.
    assert parsed()["locals"]["db_project"] == ('${split(":", var.db_instance_connection_name)[0]}')
    for name in ("cloudsql_client", "cloudsql_instance_user"):
        assert resource("google_project_iam_member", name)["project"] == "${local.db_project}"
    assert resource("google_sql_user", "function")["project"] == "${local.db_project}"


def test_a_new_package_builds_from_its_own_object_generation() -> None:
    # Issue 23 item 8: left unset, the generation in state is the old object's.
    function = resource("google_cloudfunctions2_function", "function")
    storage = block(block(block(function, "build_config"), "source"), "storage_source")
    assert storage["generation"] == (
        "${google_storage_bucket_object.function[each.key].generation}"
    )


def test_sync_api_never_gets_oidc_with_an_empty_allow_list() -> None:
    # Issue 21 item 6: OIDC_AUDIENCE with an empty OIDC_ALLOWED_EMAILS admits any
    # Google identity. sync_api gets OIDC only with someone to allow, and a
    # precondition refuses the combination for every function.
    env = parsed()["locals"]["function_env"]["sync_api"]
    assert "if length(local.invoker_emails.sync_api) > 0" in env
    function = resource("google_cloudfunctions2_function", "function")
    conditions = [p["condition"] for p in block(function, "lifecycle")["precondition"]]
    assert any(
        'contains(keys(local.function_env[each.key]), "OIDC_AUDIENCE")' in c
        and "length(lookup(local.invoker_emails, each.key, [])) > 0" in c
        for c in conditions
    ), conditions


# ---- plans through the offline provider (../shared/tools/terraform-offline) ---------

EXAMPLES = REPO / "terraform" / "examples"


def _offline_tool() -> Path | None:
    tool = Path(os.environ.get("TF_OFFLINE_TOOL", REPO.parent / "shared/tools/terraform-offline"))
    found = shutil.which("terraform") is not None and (tool / "run.sh").is_file()
    if not found and os.environ.get("TF_OFFLINE_REQUIRED") == "1":
        pytest.fail(f"TF_OFFLINE_REQUIRED=1 but terraform or {tool}/run.sh is missing")
    return tool if found else None


@pytest.fixture(scope="module")
def offline_plan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """tfvars file name, schema tag, emails known -> `terraform show -json` of its plan."""
    from shared.packaging import package_functions

    tool = _offline_tool()
    if tool is None:
        pytest.skip("terraform or the offline tool is not available")
    work = tmp_path_factory.mktemp("offline-plan")
    package_functions(work / "functions")
    plans: dict[tuple[str, str, str], Any] = {}

    def run(args: list[str], tag: str, emails: str) -> str:
        env = {**os.environ, "TF_OFFLINE_TAG": tag, "TF_OFFLINE_EMAIL_AT_PLAN": emails}
        result = subprocess.run(
            [str(tool / "run.sh"), str(TERRAFORM), *args, "-no-color"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert result.returncode == 0, f"{args}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def plan(tfvars: str, tag: str = "v7.45.0", emails: str = "1") -> Any:
        key = (tfvars, tag, emails)
        if key not in plans:
            out = work / f"{tfvars}-{tag}-{emails}.tfplan"
            run(
                [
                    "plan",
                    "-input=false",
                    f"-var-file={EXAMPLES / tfvars}",
                    f"-var=package_dir={work / 'functions'}",
                    f"-out={out}",
                ],
                tag,
                emails,
            )
            plans[key] = json.loads(run(["show", "-json", str(out)], tag, emails))
        return plans[key]

    return plan


def planned(plan: dict[str, Any], address: str) -> dict[str, Any]:
    """The planned values of one resource instance (``type.name[key]``)."""
    for change in plan["resource_changes"]:
        if change["address"] == address:
            after: dict[str, Any] = change["change"]["after"]
            return after
    raise KeyError(address)


def sync_api_env(plan: dict[str, Any]) -> dict[str, str]:
    function = planned(plan, 'google_cloudfunctions2_function.function["sync_api"]')
    env: dict[str, str] = function["service_config"][0]["environment_variables"]
    return env


def test_the_plan_gives_sync_api_oidc_only_with_an_allow_list(offline_plan: Any) -> None:
    # Issue 21 item 6, as planned: a service-account caller is the allow-list; a
    # group-only caller list means no OIDC at all (the API token alone).
    with_account = sync_api_env(offline_plan("deploy-guide.tfvars"))
    assert with_account["OIDC_ALLOWED_EMAILS"] == "warp-backend@warp-prod.iam.gserviceaccount.com"
    assert with_account["OIDC_AUDIENCE"].startswith("https://")
    groups_only = sync_api_env(offline_plan("self-contained.tfvars"))
    assert "OIDC_AUDIENCE" not in groups_only and "OIDC_ALLOWED_EMAILS" not in groups_only


def secret_env(plan: dict[str, Any], name: str) -> set[str]:
    function = planned(plan, f'google_cloudfunctions2_function.function["{name}"]')
    return {s["key"] for s in function["service_config"][0]["secret_environment_variables"]}


def test_the_plan_carries_a_read_only_hubspot_token_when_asked(offline_plan: Any) -> None:
    # Issue 20: with hubspot_read_token every function that holds the write token also
    # holds the read token, from its own Secret Manager secret; without it neither exists.
    separate = offline_plan("self-contained.tfvars")
    secret = planned(separate, 'google_secret_manager_secret.secret["HUBSPOT_READ_ACCESS_TOKEN"]')
    assert secret["secret_id"] == "hs-staging-hubspot-read-access-token"
    for name in terraform_functions():
        assert {"HUBSPOT_ACCESS_TOKEN", "HUBSPOT_READ_ACCESS_TOKEN"} <= secret_env(separate, name)
        planned(
            separate,
            f'google_secret_manager_secret_iam_member.accessor["{name} HUBSPOT_READ_ACCESS_TOKEN"]',
        )
    single = offline_plan("deploy-guide.tfvars")
    for name in terraform_functions():
        assert "HUBSPOT_READ_ACCESS_TOKEN" not in secret_env(single, name)
    with pytest.raises(KeyError):
        planned(single, 'google_secret_manager_secret.secret["HUBSPOT_READ_ACCESS_TOKEN"]')


def test_the_dashboard_matches_what_the_api_reads_back(offline_plan: Any) -> None:
    # Issue 23 item 7: zero xPos/yPos and empty groupByFields are dropped by the API,
    # so the provider diffs on every plan (#16173); ALIGN_COUNT is refused on
    # distribution values.
    plan = offline_plan("deploy-guide.tfvars")
    dashboard = json.loads(planned(plan, "google_monitoring_dashboard.sync")["dashboard_json"])
    distributions = {
        f"logging.googleapis.com/user/{m['name']}"
        for change in plan["resource_changes"]
        if change["type"] == "google_logging_metric"
        for m in [change["change"]["after"]]
        if m["metric_descriptor"][0]["value_type"] == "DISTRIBUTION"
    }
    assert distributions
    for tile in dashboard["mosaicLayout"]["tiles"]:
        assert tile.get("xPos", 1) != 0 and tile.get("yPos", 1) != 0, tile
        for data_set in tile["widget"]["xyChart"]["dataSets"]:
            query = data_set["timeSeriesQuery"]["timeSeriesFilter"]
            aggregation = query["aggregation"]
            assert aggregation.get("groupByFields", ["x"]) != [], tile["widget"]["title"]
            metric = re.search(r'metric\.type="([^"]+)"', query["filter"])[1]  # type: ignore[index]
            if metric in distributions:
                assert aggregation["perSeriesAligner"] != "ALIGN_COUNT", tile["widget"]["title"]


# ---- the deploy guide says what Terraform does ---------------------------------------

DEPLOY_GUIDE = REPO / "docs" / "deploy.md"


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DEPLOY_GUIDE.read_text(), re.S)


def test_the_guide_shows_the_example_tfvars_ci_plans() -> None:
    example = (EXAMPLES / "deploy-guide.tfvars").read_text()
    settings = "".join(line + "\n" for line in example.splitlines() if not line.startswith("#"))
    assert settings in _code_blocks("hcl"), "docs/deploy.md step 2 differs from the example"


def test_the_guide_shows_the_scheduler_body_terraform_sends() -> None:
    body = parsed()["locals"]["nightly_reconcile_body"]
    bodies = re.findall(r"The Scheduler job posts `(\{.*?\})`", DEPLOY_GUIDE.read_text())
    assert [json.loads(b) for b in bodies] == [body]


def test_the_guide_reads_terraform_outputs_only_after_the_full_apply() -> None:
    text = DEPLOY_GUIDE.read_text()
    full_apply = text.index("terraform apply plan.tfplan")
    assert "terraform output" not in text[:full_apply]
