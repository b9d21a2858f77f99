"""Reconciliation: compare every linked record on both sides, repair drift per rule, report.

- ``run``: start, continue (task ``reconcile_continue``), recover and describe runs;
- ``checkpoint``: where a run stands (phases, cursor, report so far), as stored;
- ``pages``: one page of customers (batch sync, missing records, unlinked matches);
- ``incremental``: what changed on either side since the last run;
- ``report``: the drift report stored with the run;
- ``queries``: the reads a run needs beyond the repositories.
"""

from shared.reconcile.report import DriftReport
from shared.reconcile.run import (
    InvalidRunRequest,
    RunInProgress,
    RunRequest,
    RunResult,
    UnknownCustomer,
    continue_run,
    describe_run,
    recover_stale,
    start_run,
)

__all__ = [
    "DriftReport",
    "InvalidRunRequest",
    "RunInProgress",
    "RunRequest",
    "RunResult",
    "UnknownCustomer",
    "continue_run",
    "describe_run",
    "recover_stale",
    "start_run",
]
