"""CRM search semantics, pure: request validation, filters, one sort, paging.

Limits follow the current docs (5 groups x 6 filters, 18 in total; limit
<= 200; 10,000 results per query, paging past them is a 400).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localdev.emulator.errors import validation
from localdev.emulator.properties import SEARCHABLE, PropertyDef, parse_instant
from localdev.emulator.store import Record

MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18
MAX_LIMIT, MAX_RESULTS, MAX_BODY_CHARS = 200, 10_000, 3_000
OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}
_TOKEN = re.compile(r"[\w@.\-*]+", re.UNICODE)

Lookup = Callable[[str], PropertyDef | None]


@dataclass(frozen=True)
class SearchPage:
    """One page of matches."""

    total: int
    results: list[Record]
    next_after: str | None


def run_search(
    object_type: str, body: dict[str, Any], records: list[Record], lookup: Lookup
) -> SearchPage:
    """Apply a search request body to ``records`` (live records of ``object_type``)."""
    if len(json.dumps(body)) > MAX_BODY_CHARS:
        raise validation(f"Search request body exceeds {MAX_BODY_CHARS} characters")
    groups = body.get("filterGroups") or []
    _check_shape(groups, lookup)
    limit = _int(body.get("limit", 10), "limit")
    if not 0 <= limit <= MAX_LIMIT:
        raise validation(f"limit must be between 0 and {MAX_LIMIT}")
    offset = _int(body.get("after") or 0, "after")
    if offset >= MAX_RESULTS:
        raise validation(f"Search is limited to {MAX_RESULTS} results; after={offset} is beyond it")
    query = str(body.get("query") or "").strip().lower()
    matches = [
        r
        for r in records
        if (not groups or any(_group_matches(g, r, lookup) for g in groups))
        and (not query or _query_matches(object_type, query, r))
    ]
    _sort(matches, body.get("sorts") or [], lookup)
    page = matches[offset : offset + limit]
    more = offset + limit < len(matches)
    return SearchPage(len(matches), page, str(offset + limit) if more else None)


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise validation(f"{name} must be an integer, got {value!r}") from None


def _check_shape(groups: list[dict[str, Any]], lookup: Lookup) -> None:
    if len(groups) > MAX_GROUPS:
        raise validation(f"Too many filter groups: {len(groups)} (maximum {MAX_GROUPS})")
    total = 0
    for group in groups:
        filters = group.get("filters") or []
        total += len(filters)
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise validation(
                f"Too many filters in a group: {len(filters)} (maximum {MAX_FILTERS_PER_GROUP})"
            )
        for f in filters:
            if f.get("operator") not in OPERATORS:
                raise validation(f"Unknown filter operator: {f.get('operator')!r}")
            if lookup(str(f.get("propertyName"))) is None:
                raise validation(f'Property "{f.get("propertyName")}" does not exist')
    if total > MAX_FILTERS:
        raise validation(f"Too many filters: {total} (maximum {MAX_FILTERS})")


def _group_matches(group: dict[str, Any], record: Record, lookup: Lookup) -> bool:
    return all(_filter_matches(f, record, lookup) for f in group.get("filters") or [])


def _filter_matches(f: dict[str, Any], record: Record, lookup: Lookup) -> bool:
    prop = lookup(f["propertyName"])
    assert prop is not None  # checked in _check_shape
    op = f["operator"]
    raw = record.values.get(prop.name, "")
    if op == "HAS_PROPERTY":
        return raw != ""
    if op == "NOT_HAS_PROPERTY":
        return raw == ""
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        found = _contains_token(raw, str(f.get("value", "")))
        return found if op == "CONTAINS_TOKEN" else not found
    if op in ("IN", "NOT_IN"):
        values = {_key(prop, str(v)) for v in f.get("values") or []}
        inside = raw != "" and _key(prop, raw) in values
        return inside if op == "IN" else not inside
    if op == "NEQ":
        return raw == "" or _key(prop, raw) != _key(prop, str(f.get("value", "")))
    if raw == "":
        return False
    have = _key(prop, raw)
    want = _key(prop, str(f.get("value", "")))
    if op == "EQ":
        return bool(have == want)
    if op == "BETWEEN":
        return bool(want <= have <= _key(prop, str(f.get("highValue", ""))))
    return bool(
        {"LT": have < want, "LTE": have <= want, "GT": have > want, "GTE": have >= want}[op]
    )


def _key(prop: PropertyDef, value: str) -> Any:
    """A comparable form: numbers as floats, dates as epoch ms, text case-folded."""
    try:
        if prop.type == "number":
            return float(value)
        if prop.type in ("date", "datetime"):
            return parse_instant(value, prop.name)
    except ValueError:
        return value.lower()  # a malformed filter value simply matches nothing numeric
    if prop.type == "enumeration":
        return value  # enumerations compare case-sensitively
    return value.lower()


def _contains_token(text: str, token: str) -> bool:
    pattern = re.escape(token.lower()).replace(r"\*", ".*")
    return any(re.fullmatch(pattern, t) for t in _TOKEN.findall(text.lower()))


def _query_matches(object_type: str, query: str, record: Record) -> bool:
    return any(query in record.values.get(p, "").lower() for p in SEARCHABLE[object_type])


def _sort(records: list[Record], sorts: list[Any], lookup: Lookup) -> None:
    if len(sorts) > 1:
        raise validation("Only one sort is allowed")
    records.sort(key=lambda r: (r.created_ms, r.id))
    if not sorts:
        return
    rule = sorts[0]
    if isinstance(rule, str):  # the SDK types sorts as strings: "prop" or "-prop"
        name, descending = rule.lstrip("-"), rule.startswith("-")
    else:
        name, descending = str(rule.get("propertyName")), rule.get("direction") == "DESCENDING"
    prop = lookup(name)
    if prop is None:
        raise validation(f'Cannot sort on unknown property "{name}"')
    present = [r for r in records if r.values.get(name, "")]
    absent = [r for r in records if not r.values.get(name, "")]
    present.sort(key=lambda r: _sort_key(prop, r.values[name]), reverse=descending)
    records[:] = present + absent


def _sort_key(prop: PropertyDef, value: str) -> tuple[int, Any]:
    key = _key(prop, value)
    return (0, key) if isinstance(key, (int, float)) else (1, str(key))
