"""WARP customers seeded for tests, each with a HubSpot company in the emulator."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from shared.db.repositories import customers
from shared.engine import Engine


def acme_customer(
    engine: Engine, emulator: Any, *, link: bool = True, **company: str
) -> tuple[str, str]:
    """A WARP customer, linked (or not) to a seeded company holding ``company`` properties.

    Returns (customer id, company id); the BAN is fresh each call.
    """
    ban = f"B-{uuid.uuid4().hex[:8]}"
    values = {
        "name": "Acme Telecom",
        "domain": "acme.example",
        "warp_ban": ban,
        "warp_status": "ACTIVE",
        "warp_credit_limit": "5000",
        **company,
    }
    (company_id,) = emulator.seed("companies", [values])
    with engine.database.transaction() as tx:
        row = customers.insert(
            tx,
            {
                "ban": ban,
                "company_name": "Acme Telecom",
                "customer_type": "POSTPAID",
                "status": "ACTIVE",
                "credit_limit": Decimal("5000.00"),
                "contact": {"name": "Jane Doe", "email": "jane@acme.example", "phone": "+1 555"},
                "external_ids": {"hubspot_company_id": company_id} if link else {},
            },
        )
    return str(row["id"]), company_id
