"""Reading JSON that arrived from outside: strict, bounded, and storable in PostgreSQL (pure).

``json.loads`` alone accepts documents the rest of the flow cannot handle, and each
of those used to end as a 500 (found by tests/inbound/test_fuzz_webhook.py and
tests/outbound/test_fuzz_pubsub.py):

- nesting deep enough to exhaust the parser's recursion (``RecursionError``);
- integers longer than Python's conversion limit (a ``ValueError`` that is not a
  ``JSONDecodeError``);
- ``NaN`` / ``Infinity``, which are not JSON and which JSONB refuses;
- numbers beyond a double's range (``1e400`` is valid JSON): Python reads them as
  ``inf``, which JSONB refuses too (issue 21: a 500 whose log quoted the event);
- strings (keys included) holding U+0000 or an unpaired surrogate: PostgreSQL's
  text and JSONB cannot store the first, UTF-8 cannot encode the second.

:func:`loads_untrusted` refuses all of them with :class:`UnreadableJson`, whose
message names the problem and never echoes the input.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64  # webhook events, change messages and API bodies are a few levels deep
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UnreadableJson(ValueError):
    """The bytes are not JSON this system accepts; the message says why."""


def loads_untrusted(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` as JSON, refusing what :mod:`shared.untrusted_json` lists."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise UnreadableJson(f"nested deeper than {max_depth} levels") from None
    except UnreadableJson:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise UnreadableJson(_short(exc)) from None
    problem = _problem(value, max_depth)
    if problem:
        raise UnreadableJson(problem)
    return value


def _refuse_constant(name: str) -> Any:
    raise UnreadableJson(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnreadableJson("a number is beyond the range of a double")
    return value


def _short(exc: ValueError) -> str:
    # A JSONDecodeError's text names position and expectation, never the document.
    return str(exc).split("\n", 1)[0][:200]


def _problem(value: Any, max_depth: int) -> str | None:
    """The first reason ``value`` cannot be kept, walking without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return "a string holds U+0000 or an unpaired surrogate, which cannot be stored"
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None
