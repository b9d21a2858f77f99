"""``hubspot-sync publish-change``: publish WARP change messages (WARP's scripts, backfills).

Builds exactly the message ``outbound_sync`` reads and publishes it with
google-cloud-pubsub (``PUBSUB_EMULATOR_HOST`` is honoured by the library) to
``GCP_PROJECT``/``PUBSUB_TOPIC`` unless ``--project``/``--topic`` say otherwise.
``--dry-run`` prints the exact push body Pub/Sub would deliver, publishing
nothing; ``--push-url`` POSTs that body straight to an ``outbound_sync`` (local
runs without Pub/Sub).
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import TextIO

import click
from pydantic import ValidationError

from shared.messages import ChangeMessage
from shared.messages.envelope import encode_push_envelope


@click.command("publish-change")
@click.option("--customer", "customer_ids", multiple=True, help="customer id (repeatable)")
@click.option(
    "--ids-file",
    type=click.File("r"),
    help="file with one customer id per line ('-': standard input), for backfills",
)
@click.option(
    "--entity-type",
    type=click.Choice(["customer", "contact"]),
    default="customer",
    show_default=True,
)
@click.option(
    "--operation",
    type=click.Choice(["CREATE", "UPDATE", "DELETE"]),
    default="UPDATE",
    show_default=True,
)
@click.option("--field", "fields", multiple=True, help="changed WARP field (none: every field)")
@click.option("--trigger-source", default="backfill", show_default=True)
@click.option("--user", "triggered_by_user", default=None, help="WARP user behind the change")
@click.option("--project", default=None, help="GCP project (default: GCP_PROJECT)")
@click.option("--topic", default=None, help="Pub/Sub topic (default: PUBSUB_TOPIC)")
@click.option("--dry-run", is_flag=True, help="print the push bodies, publish nothing")
@click.option("--push-url", default=None, help="POST the push body to this outbound_sync URL")
def publish_change(
    customer_ids: tuple[str, ...],
    ids_file: TextIO | None,
    entity_type: str,
    operation: str,
    fields: tuple[str, ...],
    trigger_source: str,
    triggered_by_user: str | None,
    project: str | None,
    topic: str | None,
    dry_run: bool,
    push_url: str | None,
) -> None:
    """Publish one change message per customer."""
    ids = list(customer_ids)
    if ids_file is not None:
        ids.extend(line.strip() for line in ids_file if line.strip())
    if not ids:
        raise click.UsageError("name at least one customer (--customer or --ids-file)")
    changes = [
        _message(cid, entity_type, operation, fields, trigger_source, triggered_by_user)
        for cid in ids
    ]
    if dry_run or push_url:
        _push_bodies(changes, push_url)
        return
    from shared.config import get_settings
    from shared.messages.publisher import publish_change as publish

    settings = get_settings()
    project = project or settings.gcp_project
    topic = topic or settings.pubsub_topic
    if not project or not topic:
        raise click.UsageError(
            "no topic: set GCP_PROJECT and PUBSUB_TOPIC or pass --project/--topic"
        )
    for change in changes:
        message_id = publish(change, project=project, topic=topic)
        click.echo(f"published {change.entity_id} as message {message_id}")


def _message(
    customer_id: str,
    entity_type: str,
    operation: str,
    fields: tuple[str, ...],
    trigger_source: str,
    triggered_by_user: str | None,
) -> ChangeMessage:
    try:
        return ChangeMessage.model_validate(
            {
                "entity_type": entity_type,
                "entity_id": customer_id,
                "operation": operation,
                "changed_fields": list(fields),
                "occurred_at": datetime.now(UTC),
                "trigger_source": trigger_source,
                "triggered_by_user": triggered_by_user,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise click.BadParameter(f"{customer_id!r}: {where}: {first.get('msg')}") from None


def _push_bodies(changes: list[ChangeMessage], push_url: str | None) -> None:
    import httpx

    for change in changes:
        # The attributes the publisher sets, so the body is what Pub/Sub would push.
        attributes = {"entity_type": change.entity_type, "operation": change.operation.value}
        body = encode_push_envelope(change, f"cli-{uuid.uuid4().hex}", attributes=attributes)
        if push_url is None:
            click.echo(body.decode())
            continue
        response = httpx.post(
            push_url, content=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        answer = response.text if response.status_code != 200 else json.dumps(response.json())
        click.echo(f"{change.entity_id}: {response.status_code} {answer}")
        if response.status_code >= 300:
            sys.exit(1)
