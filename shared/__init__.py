"""warp-hubspot-sync: the common package behind the five Cloud Functions.

Layout (engine and ports here, adapters in ``functions/``):

- ``shared.config``      settings from the environment, one pydantic model
- ``shared.db``          PostgreSQL access (pg8000), migrations, repositories
- ``shared.mapping``     WARP's ``field_mappings`` format, transforms (pure)
- ``shared.conflicts``   per-field sync decisions (pure)
- ``shared.hubspot``     the HubSpot client, shared rate limiter, and the emulator
- ``shared.cli``         the ``hubspot-sync`` console script
"""

__version__ = "0.1.0"
