"""Which mapped fields a change message concerns (pure).

WARP names changed fields by column or path (``company_name``, ``contact``,
``contact.email``); the mapping names them by field (``contact_email``); which
field a name concerns is :meth:`shared.mapping.FieldMapping.named_by`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from shared.mapping import MappingSet

# Stored in a dirty row's changed fields when a message asked for every field.
ALL_FIELDS = "*"


def outbound_fields(mappings: Iterable[MappingSet], changed: Collection[str]) -> set[str] | None:
    """The names of the outbound fields ``changed`` touches; None means all of them.

    An empty ``changed`` (WARP did not say) is "all". A non-empty one that names no
    outbound field gives an empty set: nothing to send.
    """
    if not changed:
        return None
    names = {c.strip() for c in changed if c.strip()}
    return {f.name for m in mappings for f in m.outbound() if f.named_by(names)}


def stored_fields(fields: set[str] | None) -> list[str]:
    """The form a dirty row keeps: the field names, or ``["*"]`` for all."""
    return [ALL_FIELDS] if fields is None else sorted(fields)


def fields_from_stored(stored: Iterable[str]) -> set[str] | None:
    """The inverse of :func:`stored_fields` over the union of several messages."""
    names = set(stored)
    return None if ALL_FIELDS in names else names
