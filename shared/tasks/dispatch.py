"""Where deferred work goes: Cloud Tasks when configured, an in-process stand-in otherwise."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shared.config.settings import Settings
from shared.errors import Retry, retry_verdict
from shared.tasks.backoff import backoff_delay
from shared.tasks.registry import TaskOutcome, run_task

if TYPE_CHECKING:
    from shared.engine.deps import Engine

log = logging.getLogger("warp_hubspot_sync.tasks")


@dataclass(frozen=True)
class Task:
    """One unit of deferred work. ``name`` makes submitting it twice harmless."""

    kind: str
    payload: Mapping[str, Any]
    delay_seconds: float = 0.0
    name: str | None = None

    def body(self) -> bytes:
        """The JSON body the retry worker receives."""
        return json.dumps({"kind": self.kind, "payload": dict(self.payload)}).encode()


class Dispatcher(Protocol):
    """Accepts tasks. ``submit`` returns False when a task of that name already exists.

    ``engine`` is the submitter's: the in-process stand-in runs the task with it, as
    the retry worker would with its own; Cloud Tasks has no use for it.
    """

    def submit(self, task: Task, engine: Engine) -> bool: ...


@dataclass(order=True)
class _Scheduled:
    due: float
    seq: int
    task: Task = field(compare=False)
    engine: Engine = field(compare=False)
    attempt: int = field(compare=False, default=0)


class InProcessDispatcher:
    """Runs tasks in a background thread at their scheduled time, like Cloud Tasks would.

    It calls the same handlers as ``retry_worker`` and retries a RETRY outcome with
    the same backoff the Cloud Tasks queue is configured with, up to
    ``max_attempts``. Names are remembered, so a duplicate submit is dropped as
    Cloud Tasks drops it. For local runs and tests only: on Cloud Functions no
    thread may work after the response.
    """

    def __init__(self, *, base: float, cap: float, max_attempts: int, time_scale: float = 1.0):
        self._base, self._cap, self._max_attempts = base, cap, max_attempts
        # Tests and the demo compress waiting time; the order of events stays the same.
        self._time_scale = time_scale
        self._heap: list[_Scheduled] = []
        self._names: set[str] = set()
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._running = 0
        self._stopped = False
        self.completed = 0
        self.retried = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._loop, name="task-stand-in", daemon=True)
        self._thread.start()

    def submit(self, task: Task, engine: Engine) -> bool:
        """Schedule ``task`` to run with ``engine``; False when one of the same name was
        submitted before."""
        with self._cond:
            if task.name is not None:
                if task.name in self._names:
                    return False
                self._names.add(task.name)
            self._push(task, engine, task.delay_seconds, attempt=0)
            return True

    def pending(self, horizon: float = 60.0) -> int:
        """Tasks running now or due within ``horizon`` seconds."""
        with self._cond:
            return self._busy(horizon)

    def wait_idle(self, timeout: float = 30.0, horizon: float = 60.0) -> bool:
        """Block until nothing runs and nothing is due within ``horizon`` seconds.

        Tasks due later (a lease check minutes away, a long backoff) do not keep
        the runner busy; False if ``timeout`` passed first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy(horizon):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _busy(self, horizon: float) -> int:
        limit = time.monotonic() + horizon * self._time_scale
        return self._running + sum(1 for item in self._heap if item.due <= limit)

    def run_due_now(self) -> None:
        """Make every scheduled task due at once (the demo's "fast-forward")."""
        with self._cond:
            now = time.monotonic()
            for item in self._heap:
                item.due = now
            heapq.heapify(self._heap)
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop the worker thread; scheduled tasks are dropped."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _push(self, task: Task, engine: Engine, delay: float, attempt: int) -> None:
        due = time.monotonic() + max(0.0, delay) * self._time_scale
        heapq.heappush(self._heap, _Scheduled(due, next(self._seq), task, engine, attempt))
        self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._heap or self._heap[0].due > time.monotonic()
                ):
                    timeout = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                item = heapq.heappop(self._heap)
                self._running += 1
            outcome = self._run(item)
            with self._cond:
                self._running -= 1
                if outcome is TaskOutcome.RETRY and item.attempt + 1 < self._max_attempts:
                    self.retried += 1
                    delay = backoff_delay(item.attempt + 1, base=self._base, cap=self._cap)
                    self._push(item.task, item.engine, delay, item.attempt + 1)
                elif outcome is TaskOutcome.SCHEDULED:
                    self.retried += 1  # the next attempt is a task of its own, already submitted
                elif outcome is TaskOutcome.DONE:
                    self.completed += 1
                else:
                    self.failed += 1
                self._cond.notify_all()

    @staticmethod
    def _run(item: _Scheduled) -> TaskOutcome:
        try:
            return run_task(item.engine, item.task.kind, item.task.payload, item.attempt)
        except Exception as exc:  # a crash (a bug) is retried, as a 500 is by Cloud Tasks
            retryable = retry_verdict(exc) is not Retry.NEVER
            log.exception(
                "task failed",
                extra={"fields": {"kind": item.task.kind, "attempt": item.attempt}},
            )
            return TaskOutcome.RETRY if retryable else TaskOutcome.FAILED


class CloudTasksDispatcher:
    """Creates HTTP tasks for ``retry_worker`` with an OIDC token.

    google-cloud-tasks (gRPC, ~0.5-0.8 s to import) is imported on first submit,
    so functions that never defer work never pay for it.
    """

    def __init__(self, settings: Settings) -> None:
        assert settings.tasks_queue and settings.gcp_project and settings.gcp_region
        self._settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def submit(self, task: Task, engine: Engine) -> bool:
        """Create the task; False when a task of that name exists already."""
        from google.api_core import exceptions as gexc

        client = self._get_client()
        s = self._settings
        parent = client.queue_path(s.gcp_project, s.gcp_region, s.tasks_queue)
        http_request: dict[str, Any] = {
            "http_method": "POST",
            "url": s.retry_worker_url,
            "headers": {"Content-Type": "application/json"},
            "body": task.body(),
        }
        if s.tasks_service_account:
            http_request["oidc_token"] = {
                "service_account_email": s.tasks_service_account,
                # The worker checks its own URL as audience; OIDC_AUDIENCE is the
                # *calling* function's own audience, so it must not be used here.
                "audience": s.retry_worker_url,
            }
        cloud_task: dict[str, Any] = {"http_request": http_request}
        if task.name:
            cloud_task["name"] = client.task_path(
                s.gcp_project, s.gcp_region, s.tasks_queue, task.name
            )
        if task.delay_seconds > 0:
            cloud_task["schedule_time"] = dt.datetime.now(dt.UTC) + dt.timedelta(
                seconds=task.delay_seconds
            )
        try:
            client.create_task(request={"parent": parent, "task": cloud_task})
        except gexc.AlreadyExists:
            return False
        return True

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import tasks_v2

                emulator = self._settings.cloud_tasks_emulator_host
                if emulator:
                    import grpc
                    from google.cloud.tasks_v2.services.cloud_tasks.transports import (
                        CloudTasksGrpcTransport,
                    )

                    channel = grpc.insecure_channel(emulator)
                    self._client = tasks_v2.CloudTasksClient(
                        transport=CloudTasksGrpcTransport(channel=channel)
                    )
                else:
                    self._client = tasks_v2.CloudTasksClient()
            return self._client


def dispatcher_from_settings(settings: Settings) -> Dispatcher:
    """Cloud Tasks when ``TASKS_QUEUE`` is set, the in-process stand-in otherwise."""
    if settings.tasks_queue:
        return CloudTasksDispatcher(settings)
    return InProcessDispatcher(
        base=settings.retry_base_seconds,
        cap=settings.retry_cap_seconds,
        max_attempts=settings.retry_max_attempts,
    )
