"""The developer commands of ``hubspot-sync``: ``demo``, ``serve`` and ``emulator``."""
