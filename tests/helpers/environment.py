"""The environment a person sets before running the local stack, restored after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def as_a_user_sets_it(database_url: str, **variables: str) -> Iterator[None]:
    """``DATABASE_URL`` (and ``variables``) set, no HubSpot token, so the local stack runs
    on this database with its emulator as HubSpot; every variable restored afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", database_url)
        patch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
        for name, value in variables.items():
            patch.setenv(name, value)
        yield
