"""JSON text for JSONB parameters, and column allow-lists for dynamic statements."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        # A string keeps the exact digits a float would round (12,2 money columns).
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_json(value: Any) -> str:
    """JSON text for a ``::jsonb`` parameter (datetimes ISO 8601, UUIDs and Decimals as text)."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)


def check_columns(names: Iterable[str], allowed: frozenset[str], table: str) -> list[str]:
    """The names, in order, after checking each is an allowed column of ``table``.

    Column names are the one part of a statement that cannot be a parameter, so
    every dynamic name is checked against a fixed list before it reaches SQL.
    """
    names = list(names)
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise ValueError(f"not a column this statement may use in {table}: {', '.join(unknown)}")
    return names
