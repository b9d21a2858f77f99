"""Publishing change messages, for WARP's Python code and for backfills.

Built on google-cloud-pubsub, imported on first use (about half a second of
import). ``PUBSUB_EMULATOR_HOST`` is honoured by the library itself.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.messages.change import ChangeMessage

_publisher: Any = None
_lock = threading.Lock()


def publish_change(change: ChangeMessage, *, project: str, topic: str, timeout: float = 30) -> str:
    """Publish ``change`` exactly as ``outbound_sync`` reads it; return the message id."""
    global _publisher
    with _lock:
        if _publisher is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]

            _publisher = pubsub_v1.PublisherClient()
    topic_path = _publisher.topic_path(project, topic)
    future = _publisher.publish(
        topic_path,
        change.model_dump_json().encode(),
        entity_type=change.entity_type,
        operation=change.operation.value,
    )
    return str(future.result(timeout=timeout))
