"""``hubspot-sync publish-change``: the push body it prints is the one outbound_sync reads."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner

from shared.cli.main import cli
from shared.messages import parse_delivery


def test_dry_run_prints_the_exact_push_body() -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    args = ["publish-change", "--dry-run", "--field", "status", "--field", "credit_limit"]
    args += ["--user", "u-9", "--trigger-source", "billing_job"]
    for cid in ids:
        args += ["--customer", cid]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    for line, cid in zip(lines, ids, strict=True):
        delivery = parse_delivery(line.encode(), {"Content-Type": "application/json"})
        assert str(delivery.change.entity_id) == cid
        assert delivery.change.changed_fields == ["status", "credit_limit"]
        assert delivery.change.trigger_source == "billing_job"
        assert delivery.change.triggered_by_user == "u-9"
        assert delivery.attributes == {"entity_type": "customer", "operation": "UPDATE"}
        assert json.loads(line)["message"]["messageId"].startswith("cli-")


def test_ids_file_and_bad_ids() -> None:
    cid = str(uuid.uuid4())
    result = CliRunner().invoke(
        cli, ["publish-change", "--dry-run", "--ids-file", "-"], input=f"{cid}\n\n"
    )
    assert result.exit_code == 0 and cid in _decoded(result.output)
    bad = CliRunner().invoke(cli, ["publish-change", "--dry-run", "--customer", "nope"])
    assert bad.exit_code != 0 and "UUID" in bad.output
    none = CliRunner().invoke(cli, ["publish-change", "--dry-run"])
    assert none.exit_code != 0 and "at least one customer" in none.output


def _decoded(output: str) -> str:
    line = output.strip()
    return parse_delivery(line.encode(), {}).change.model_dump_json()
