"""Every kind of deferred work and the handler that runs it.

Imported by the retry worker and by every module that submits tasks, so a
handler is known wherever its work may run. One ``register`` line per kind;
each flow adds only its own lines.
"""

from shared.tasks.registry import register

# Outbound sync: the coalesced flush of customers marked dirty by change messages.
register("outbound_flush", "shared.outbound.flush:run_flush_task")
# A hubspot_sync_queue row to run again (its ``kind`` column picks the runner).
register("queue_item", "shared.retry.worker:run_queue_task")
# Inbound webhook events stored but not processed within the receiver's time budget.
register("inbound_batch", "shared.inbound.process:run_inbound_batch")
# Reconciliation: the next time budget of a run, from its checkpoint.
register("reconcile_continue", "shared.reconcile.run:continue_run")
# The sweep (Cloud Scheduler, every minute): captured changes, WARP's own queue rows,
# every dirty customer.
register("outbound_sweep", "shared.outbound.sweep:run_sweep_task")
