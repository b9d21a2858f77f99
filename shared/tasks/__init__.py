"""Deferred work: retries, deferred inbound batches, coalesced flushes, reconcile continuations.

Work is a :class:`Task` (a ``kind``, a JSON payload, when, and a stable name). With
Cloud Tasks configured (``TASKS_QUEUE``) it becomes an HTTP task for ``retry_worker``;
without, an in-process stand-in runs the same handlers at the scheduled time, so local
runs and tests exercise the same code.
"""

from shared.tasks.backoff import backoff_ceiling, backoff_delay, retry_delay_within, task_name
from shared.tasks.dispatch import (
    CloudTasksDispatcher,
    Dispatcher,
    InProcessDispatcher,
    Task,
)
from shared.tasks.registry import TaskOutcome, register, run_task

__all__ = [
    "CloudTasksDispatcher",
    "Dispatcher",
    "InProcessDispatcher",
    "Task",
    "TaskOutcome",
    "backoff_ceiling",
    "backoff_delay",
    "register",
    "retry_delay_within",
    "run_task",
    "task_name",
]
