"""HubSpot -> WARP: webhook deliveries verified, stored once, applied through the engine.

- ``events``: HubSpot's event objects, validated (pure);
- ``verify``: which URI and header the signature is checked over;
- ``receive``: storing a delivery in one transaction, idempotently;
- ``apply``: one chunk of events applied in one transaction;
- ``process``: chunks, time budget, failure isolation, the ``inbound_batch`` task,
  the sweep (``process_pending``);
- ``webhook``: one delivery from request to answer (the adapter's only call).
"""
