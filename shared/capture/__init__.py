"""Change capture in WARP's database: a trigger on ``accounts.customers`` (issue 16).

:mod:`shared.capture.watch` generates the trigger from the mapping (pure);
:mod:`shared.capture.install` enables, disables and reports it;
:mod:`shared.capture.pending` gives the times of changes not swept yet to the flows
that decide by time. The sweep that drains
what it records is :mod:`shared.outbound.sweep`.
"""
