"""A realistic book of WARP customers and their HubSpot counterparts, for the demo.

:func:`plan_book` (pure, seeded) decides who the customers are and how each stands
with HubSpot; :func:`seed_book` writes them: the WARP rows into ``accounts.customers``
and the HubSpot companies and contacts into the emulator (a silent import, as when a
portal already holds data) or, with a real token, through the API.

How the customers stand with HubSpot (shares of the book):

- ``in_sync`` (about 70 %): linked to a company and a contact holding the same values;
- ``drifted`` (12 %): linked, but one mapped field differs on the HubSpot side;
- ``unlinked_by_name`` (7 %): a company of the same name exists, without a domain;
- ``unlinked_by_domain`` (6 %): a company under another name at the contact's domain;
- ``unlinked_no_company``: nothing in HubSpot yet.

Everything is fictional: ``.example`` domains and 555 phone numbers.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from shared.db.repositories import customers
from shared.errors import ConfigurationError
from shared.mapping import EntityType, MappingSet

if TYPE_CHECKING:
    from localdev.stack import LocalStack

_PLACES = (
    "Northwind", "Bluepeak", "Cedar", "Harbor", "Summit", "Riverside", "Granite", "Oakridge",
    "Lakeview", "Silverline", "Redwood", "Ironbridge", "Maple", "Westfield", "Sunrise",
    "Highland", "Brightwater", "Copperfield", "Evergreen", "Fairhaven", "Goldcrest", "Kestrel",
    "Larkspur", "Meadowbrook", "Pinecrest", "Quarry", "Stonegate", "Tidewater", "Windmill",
    "Ashford",
)  # fmt: skip
_TRADES = (
    "Logistics", "Dental", "Networks", "Foods", "Legal", "Motors", "Clinics", "Hotels",
    "Analytics", "Builders", "Florists", "Freight", "Insurance", "Media", "Pharmacy", "Realty",
    "Robotics", "Studios", "Textiles", "Ventures",
)  # fmt: skip
_SUFFIXES = ("LLC", "Inc", "Group", "Partners", "Co")
_FIRST = (
    "Ada", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jada", "Kofi",
    "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Umar",
    "Vera", "Wes", "Yara", "Zane",
)  # fmt: skip
_LAST = (
    "Adler", "Baptiste", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jansen", "Kowalski", "Laine", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi",
    "Sato", "Tanaka", "Ueda", "Varga", "Weber", "Xu", "Young",
)  # fmt: skip
_STATUSES = (("ACTIVE", 0.85), ("SUSPENDED", 0.07), ("TRIAL", 0.06), ("CLOSED", 0.02))
_TYPES = (("POSTPAID", 0.7), ("PREPAID", 0.2), ("RESELLER", 0.1))
# Which field a drifted customer differs in, round-robin: one per conflict rule.
DRIFTS = ("status", "credit_limit", "company_name", "contact_phone")


class Standing(enum.StrEnum):
    """How a seeded customer stands with HubSpot (see the module docstring)."""

    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    BY_NAME = "unlinked_by_name"
    BY_DOMAIN = "unlinked_by_domain"
    NO_COMPANY = "unlinked_no_company"

    @property
    def linked(self) -> bool:
        """Whether the customer starts linked to a company and a contact."""
        return self in (Standing.IN_SYNC, Standing.DRIFTED)


_SHARES = (
    (Standing.DRIFTED, 0.12),
    (Standing.BY_NAME, 0.07),
    (Standing.BY_DOMAIN, 0.06),
    (Standing.NO_COMPANY, 0.05),
)


@dataclass(frozen=True)
class PlannedCustomer:
    """One customer of the book before it is written: the WARP row and its standing."""

    row: dict[str, Any]
    standing: Standing
    drift: str | None = None

    @property
    def domain(self) -> str:
        """The domain of the primary contact's email."""
        return str(self.row["contact"]["email"]).rsplit("@", 1)[1]


@dataclass(frozen=True)
class SeededCustomer:
    """A customer as written, with the HubSpot records seeded for it (None: none).

    For an unlinked customer ``company_id`` is the company that linking should find
    (by name or by domain); ``standing.linked`` says whether WARP knows it yet.
    """

    customer_id: str
    ban: str
    standing: Standing
    company_id: str | None
    contact_id: str | None
    drift: str | None = None


@dataclass
class Book:
    """The seeded customers, with helpers to pick them by standing."""

    customers: list[SeededCustomer] = field(default_factory=list)

    def of(self, standing: Standing) -> list[SeededCustomer]:
        """The customers with this standing, in seeding order."""
        return [c for c in self.customers if c.standing == standing]

    def linked(self) -> list[SeededCustomer]:
        """The customers that start linked."""
        return [c for c in self.customers if c.standing.linked]

    def counts(self) -> dict[str, int]:
        """How many customers of each standing, plus drift per field."""
        counted = Counter(c.standing.value for c in self.customers)
        counted.update(f"drift:{c.drift}" for c in self.customers if c.drift)
        return dict(counted)


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights=weights)[0]


def _company_names(rng: random.Random, count: int) -> list[str]:
    combos = [f"{p} {t}" for p in _PLACES for t in _TRADES]
    if count > len(combos) * len(_SUFFIXES):
        raise ValueError(f"the demo book holds at most {len(combos) * len(_SUFFIXES)} customers")
    rng.shuffle(combos)
    # Past the plain names, a legal suffix keeps them unique.
    return [
        combos[i % len(combos)] + ("" if i < len(combos) else f" {_SUFFIXES[i // len(combos) - 1]}")
        for i in range(count)
    ]


def plan_book(count: int, seed: int = 7) -> list[PlannedCustomer]:
    """``count`` fictional customers with their standings; the same for the same seed."""
    rng = random.Random(seed)
    names = _company_names(rng, count)
    standings: list[Standing] = []
    for standing, share in _SHARES:
        standings += [standing] * round(count * share)
    standings += [Standing.IN_SYNC] * (count - len(standings))
    rng.shuffle(standings)
    planned: list[PlannedCustomer] = []
    drifts = 0
    for index, (name, standing) in enumerate(zip(names, standings, strict=True)):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        domain = "".join(ch for ch in name.lower() if ch.isalnum()) + ".example"
        row = {
            "ban": f"BAN-{100_001 + index}",
            "company_name": name,
            "legal_name": f"{name} {rng.choice(_SUFFIXES)}",
            "status": _weighted(rng, _STATUSES),
            "customer_type": _weighted(rng, _TYPES),
            "credit_limit": Decimal(rng.randrange(2, 100) * 500),
            "contact": {
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@{domain}",
                "phone": f"+1 555 01{rng.randrange(10, 99)} {rng.randrange(1000, 9999)}",
            },
            "currency": "USD",
            "created_by": "demo-seed",
        }
        drift = None
        if standing is Standing.DRIFTED:
            drift = DRIFTS[drifts % len(DRIFTS)]
            drifts += 1
        planned.append(PlannedCustomer(row, standing, drift))
    return planned


def hubspot_values(mappings: MappingSet, row: Mapping[str, Any]) -> dict[str, str]:
    """The HubSpot properties that hold the same values as WARP ``row`` (every active field)."""
    return {f.hubspot_property: f.to_hubspot(f.read_warp(row)) for f in mappings.active()}


def _drifted(planned: PlannedCustomer, company: dict[str, str], contact: dict[str, str]) -> None:
    """Make the HubSpot side differ in the planned field, the way people edit it."""
    row = planned.row
    if planned.drift == "status":
        company["warp_status"] = "SUSPENDED" if row["status"] != "SUSPENDED" else "ACTIVE"
    elif planned.drift == "credit_limit":
        company["warp_credit_limit"] = str(int(row["credit_limit"]) + 2_500)
    elif planned.drift == "company_name":
        company["name"] = f"{row['company_name']} ({row['ban'][-3:]})"
    elif planned.drift == "contact_phone":
        contact["phone"] = "+1 555 0100 0000"


def seed_book(
    stack: LocalStack,
    count: int = 300,
    *,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> Book:
    """Write ``count`` customers to WARP and their counterparts to HubSpot; the book.

    ``progress(n)`` is called as customers are written (n more done).
    """
    engine = stack.require_engine()
    company_fields = engine.mapping_for(None, EntityType.CUSTOMER).for_entity(EntityType.CUSTOMER)
    contact_fields = engine.mapping_for(None, EntityType.CONTACT).for_entity(EntityType.CONTACT)
    planned = plan_book(count, seed)
    _check_room(stack, [str(p.row["ban"]) for p in planned])

    companies: dict[int, dict[str, str]] = {}
    contacts: dict[int, dict[str, str]] = {}
    for index, p in enumerate(planned):
        if p.standing is Standing.NO_COMPANY:
            continue
        if p.standing is Standing.BY_NAME:
            # Entered by hand in HubSpot: the name, no domain, none of WARP's properties.
            companies[index] = {"name": p.row["company_name"]}
        elif p.standing is Standing.BY_DOMAIN:
            companies[index] = {"name": f"{p.row['legal_name']} Holdings", "domain": p.domain}
        else:
            company = hubspot_values(company_fields, p.row)
            contact = hubspot_values(contact_fields, p.row)
            _drifted(p, company, contact)
            companies[index] = {k: v for k, v in company.items() if v != ""}
            contacts[index] = contact

    writer = _HubSpotWriter(stack)
    company_ids = writer.create("companies", companies)
    contact_ids = writer.create("contacts", contacts)
    writer.associate([(company_ids[i], contact_ids[i]) for i in contacts if i in company_ids])

    book = Book()
    chunk = 50
    for start in range(0, len(planned), chunk):
        with engine.database.transaction() as tx:
            # The book is WARP's data from before the story starts, not changes to push:
            # the capture trigger skips it as it skips the sync's own writes.
            customers.mark_own_write(tx)
            for index in range(start, min(start + chunk, len(planned))):
                p = planned[index]
                row = dict(p.row)
                if p.standing.linked:
                    row["external_ids"] = {
                        EntityType.CUSTOMER.link_key: company_ids[index],
                        EntityType.CONTACT.link_key: contact_ids[index],
                    }
                written = customers.insert(tx, row)
                book.customers.append(
                    SeededCustomer(
                        customer_id=str(written["id"]),
                        ban=str(row["ban"]),
                        standing=p.standing,
                        company_id=company_ids.get(index),
                        contact_id=contact_ids.get(index),
                        drift=p.drift,
                    )
                )
        if progress is not None:
            progress(min(chunk, len(planned) - start))
    return book


def _check_room(stack: LocalStack, bans: list[str]) -> None:
    """Refuse a database the book cannot go into without mixing with what is there.

    The BANs are unique, so a book seeded before blocks a second one; and a fresh
    emulator hands out record ids from the same start each run, so customers
    already linked to HubSpot ids would point at the new book's records.
    """
    fresh_hubspot = stack.emulator is not None
    with stack.require_engine().database.transaction() as tx:
        clashes = int(
            tx.fetch_value(
                f"SELECT count(*) FROM {customers.TABLE} WHERE ban = ANY(CAST(:bans AS text[])) "
                f"OR (CAST(:fresh AS boolean) AND {customers.linked_sql()})",
                {"bans": bans, "fresh": fresh_hubspot},
            )
        )
    if clashes:
        raise ConfigurationError(
            f"the database already holds {clashes} customers the demo book would clash with "
            "(its BANs, or links to HubSpot ids the new emulator will reuse): point "
            "DATABASE_URL at an empty database, or unset it for the embedded one"
        )


class _HubSpotWriter:
    """Creates the book's HubSpot records: a silent import into the emulator, or the API."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack

    def create(self, object_type: str, records: Mapping[int, dict[str, str]]) -> dict[int, str]:
        """Create the records; their ids by the caller's index."""
        keys = list(records)
        emulator = self._stack.emulator
        if emulator is not None:
            ids = emulator.seed(object_type, [records[k] for k in keys])
            return dict(zip(keys, ids, strict=True))
        client = self._stack.hubspot
        assert client is not None
        result = client.objects(object_type).batch_create(  # type: ignore[arg-type]
            {str(k): records[k] for k in keys}
        )
        if result.errors:
            raise RuntimeError(f"HubSpot refused part of the seed: {result.errors[0]}")
        return {k: result.results[str(k)].id for k in keys}

    def associate(self, pairs: list[tuple[str, str]]) -> None:
        """Associate each company with its contact (no webhooks reach the story for these)."""
        emulator = self._stack.emulator
        if emulator is None:
            client = self._stack.hubspot
            assert client is not None
            for company_id, contact_id in pairs:
                client.associate("companies", company_id, "contacts", contact_id)
            return
        # An association is a user action in the emulator; the import that created
        # these records would not notify anyone, so neither does this.
        emulator.webhooks.pause()
        try:
            for company_id, contact_id in pairs:
                emulator.associate("companies", company_id, "contacts", contact_id)
            emulator.webhooks.clear()
        finally:
            emulator.webhooks.resume()
