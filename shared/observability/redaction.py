"""What may appear in a log line: the redaction rule for structured fields and text.

Rule, applied to every key of ``extra={"fields": {...}}`` and of the request context
(recursively through nested dicts and lists):

1. A key listed in :data:`ALLOWED_FIELDS` (or added with :func:`allow_fields`) is kept.
2. A key that looks **secret** is masked: one of its words is ``token``, ``secret``,
   ``password``, ``passwd``, ``authorization``, ``cookie``, ``credential(s)``,
   ``signature``, ``apikey``, ``dsn``, or its last word is ``key`` (``api_key``,
   ``encryption_key``). Words come from snake_case, kebab-case and camelCase.
3. A key whose last word is ``id``, ``ids``, ``count`` or ``total`` is kept
   (``contact_id``, ``hubspot_company_id``, ``email_count``): ids are what makes a log
   line useful and are not personal data by themselves.
4. A key that looks **personal** is masked: a word containing ``email`` or ``phone``;
   a word in ``contact``, ``address``, ``street``, ``city``, ``zip``, ``postcode``,
   ``firstname``, ``lastname``, ``fullname``, ``birthday``, ``iban``; ``name`` alone or
   after ``first``/``last``/``full``/``display``/``contact``/``customer``/``company``/
   ``person``/``user``/``legal``; and the words that usually carry record contents:
   ``value``, ``values``, ``properties``, ``payload``, ``body``, ``raw``, ``data``,
   ``headers``. Raw payloads therefore never reach a log line.
5. Anything else is kept; string values still pass through :func:`scrub_text`, which
   replaces e-mail addresses and ``Bearer``/``Basic`` credentials found inside text.

Masking replaces the whole value with :data:`REDACTED`, whatever its type.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from typing import Any

from shared.errors import SyncError

REDACTED = "[REDACTED]"

# Identifiers that contain a "secret-looking" word but are safe to log.
ALLOWED_FIELDS: set[str] = {"idempotency_key"}

_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "signature",
        "apikey",
        "dsn",
    }
)
_SAFE_LAST_WORDS = frozenset({"id", "ids", "count", "total"})
_PERSONAL_SUBSTRINGS = ("email", "phone")
_PERSONAL_WORDS = frozenset(
    {
        "contact",
        "address",
        "street",
        "city",
        "zip",
        "postcode",
        "firstname",
        "lastname",
        "fullname",
        "birthday",
        "iban",
        "value",
        "values",
        "properties",
        "payload",
        "body",
        "raw",
        "data",
        "headers",
    }
)
_NAME_OWNERS = frozenset(
    {
        "first",
        "last",
        "full",
        "display",
        "contact",
        "customer",
        "company",
        "person",
        "user",
        "legal",
    }
)
_MAX_DEPTH = 8

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
# Local part: anything RFC 5322 allows unquoted; domain: dotted labels with a TLD.
# Lengths are bounded as RFC 5321 bounds them (local part 64, label 63): with an
# unbounded local part a long string without "@" cost quadratic time (100 kB took
# half a minute; a fuzzed Pub/Sub message id hung outbound_sync's log line).
_EMAIL = re.compile(
    r"[^\s@<>()\[\],;:\"]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,63}"
)
_CREDENTIAL = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE)


def allow_fields(*names: str) -> None:
    """Declare field names safe to log even though they look secret or personal.

    Call at import time of the module that logs them, e.g. a limiter logging
    ``tokens_left``; the rule and this list are the whole policy.
    """
    ALLOWED_FIELDS.update(names)


def key_words(key: str) -> list[str]:
    """The lower-case words of a snake_case, kebab-case or camelCase key."""
    return [w for w in _SPLIT.split(_CAMEL.sub(r"\1_\2", key).lower()) if w]


def is_sensitive_key(key: str) -> bool:
    """Whether the value under ``key`` must be masked (rules 1-4 of the module doc)."""
    if key in ALLOWED_FIELDS:
        return False
    words = key_words(key)
    if not words:
        return False
    if any(w in _SECRET_WORDS for w in words) or words[-1] == "key":
        return True
    if words[-1] in _SAFE_LAST_WORDS:
        return False
    if any(s in w for w in words for s in _PERSONAL_SUBSTRINGS):
        return True
    if any(w in _PERSONAL_WORDS for w in words):
        return True
    return words[-1] == "name" and (len(words) == 1 or words[-2] in _NAME_OWNERS)


def scrub_text(text: str) -> str:
    """Mask e-mail addresses and HTTP credentials inside free text."""
    return _CREDENTIAL.sub(r"\1 " + REDACTED, _EMAIL.sub(REDACTED, text))


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with sensitive keys masked and text scrubbed, JSON-ready."""
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return redact_mapping(value, _depth)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [redact(v, _depth + 1) for v in items]
    return scrub_text(str(value))


def redact_mapping(fields: Mapping[Any, Any], _depth: int = 0) -> dict[str, Any]:
    """Apply :func:`redact` to every entry of a mapping, masking sensitive keys."""
    out: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key = str(raw_key)
        out[key] = REDACTED if is_sensitive_key(key) else redact(raw_value, _depth + 1)
    return out


# PostgreSQL error fields that name schema objects, never data (protocol "Error and
# Notice Message Fields"): schema, table, column, data type, constraint.
_SERVER_ERROR_NAMES = (
    ("s", "schema"),
    ("t", "table"),
    ("c", "column"),
    ("d", "type"),
    ("n", "constraint"),
)


def describe_error(exc: BaseException) -> str:
    """``Type: text`` for a log line, with nothing a party sent us in ``text``.

    A PostgreSQL error keeps its SQLSTATE and the names of the objects involved: its
    message, detail and context quote the values (``Token "Infinity" is invalid ...
    {"phone": "+1 555 ...``). Our own errors keep their words (:meth:`SyncError.loggable`).
    Any other exception keeps only its type: a built-in message quotes its input
    (``invalid literal for int() with base 10: 'Jane'``), and the stack trace already
    says where it happened.
    """
    name = type(exc).__name__
    info = exc.args[0] if exc.args else None
    if isinstance(info, dict) and "C" in info:  # pg8000's DatabaseError: the server's fields
        named = [f"{label} {info[key]}" for key, label in _SERVER_ERROR_NAMES if key in info]
        names = ", ".join(named)
        return f"{name}: SQLSTATE {info['C']}" + (f" ({names})" if names else "")
    if isinstance(exc, SyncError):
        return f"{name}: {scrub_text(exc.loggable())}"
    return name


def safe_traceback(exc: BaseException) -> str:
    """A Python traceback of ``exc`` and its chain, each exception as :func:`describe_error`."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for error, link_to_next in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(error.__traceback__))
        parts.append(describe_error(error) + "\n")
        if link_to_next:
            parts.append(link_to_next)
    return "".join(parts).rstrip("\n")


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
