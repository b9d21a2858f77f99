"""The ``hubspot-sync`` console script (click). Entry point: ``shared.cli.main:main``."""
