"""WARP's mapping format and transforms: the public API (pure, no I/O).

Typical use::

    from shared.mapping import EntityType, MappingProvider

    provider = MappingProvider(load_rows)
    fields = provider.for_customer(customer_id, EntityType.CUSTOMER)
    for field in fields.outbound():
        properties[field.hubspot_property] = field.to_hubspot(field.read_warp(row))
"""

from shared.mapping.config import (
    DEFAULT_CONTACT_SYNC,
    DEFAULT_CUSTOMER_SYNC,
    MappingConfigError,
    default_mappings,
    merge_mappings,
    parse_field_mappings,
)
from shared.mapping.model import ConflictRule, Direction, EntityType, FieldMapping, MappingSet
from shared.mapping.provider import MappingProvider
from shared.mapping.transforms import TRANSFORMS, HubSpotType, MappingError

__all__ = [
    "DEFAULT_CONTACT_SYNC",
    "DEFAULT_CUSTOMER_SYNC",
    "TRANSFORMS",
    "ConflictRule",
    "Direction",
    "EntityType",
    "FieldMapping",
    "HubSpotType",
    "MappingConfigError",
    "MappingError",
    "MappingProvider",
    "MappingSet",
    "default_mappings",
    "merge_mappings",
    "parse_field_mappings",
]
