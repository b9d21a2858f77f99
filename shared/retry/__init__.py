"""The life of a ``hubspot_sync_queue`` row: queued after a failure, run again, done or dead.

A retryable failure becomes a QUEUED row plus a named Cloud Task for
``retry_worker`` at the backoff time (:func:`enqueue_failure`); a permanent one a
FAILED row, visible and replayable (:func:`replay`). The worker claims the row,
runs it through the runner registered for its ``kind`` and marks it COMPLETED,
QUEUED again (the task answers 503 and Cloud Tasks backs off) or FAILED.
"""

from shared.retry.items import QUEUE_TASK_KIND, enqueue_failure, replay, submit_item_task
from shared.retry.worker import handle_task, process_item, register_runner

__all__ = [
    "QUEUE_TASK_KIND",
    "enqueue_failure",
    "handle_task",
    "process_item",
    "register_runner",
    "replay",
    "submit_item_task",
]
