"""The convergence test's model (pure): the mapping it runs under, and what each field must
end as once both sides have settled.

The expectations are derived here from the rules in docs/sync-rules.md, written down
independently of ``shared.conflicts.decide`` (calling it would make a test that cannot
fail). Between two settle points every edit is "concurrent" with the sync machinery:
the model does not know whether an edit had crossed before the other side's edit was
made, so where the rules allow two histories it accepts both outcomes, and no other.

Values are fresh (never reused), so a field's value alone tells which edit it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Two edits on opposite sides closer than this are treated as a tie of unknown order:
# WARP's clock (PostgreSQL's NOW()) and HubSpot's (the emulator's ms clock) are read
# at slightly different moments of one step.
TIE = 0.005

STATUSES = ("ACTIVE", "SUSPENDED", "TRIAL", "CLOSED")


@dataclass(frozen=True)
class FieldSpec:
    """One mapped field of the test's configuration."""

    name: str
    entity: str  # "customer" (the company) or "contact"
    prop: str
    warp_field: str  # column or dotted JSONB path
    direction: str
    rule: str
    kind: str  # text | status | money | int | domain
    # A field whose WARP value another field writes (its WARP location holds this one's):
    # the name of that field. Its value is derived, never edited in WARP on its own.
    derived_from: str | None = None
    transform: str | None = None

    def entry(self) -> dict[str, str]:
        """The field in WARP's ``hubspot_sync_config.field_mappings`` format."""
        entry = {
            "entity_type": self.entity,
            "hubspot_property": self.prop,
            "warp_field": self.warp_field,
            "sync_direction": self.direction,
            "conflict_resolution": self.rule,
        }
        if self.transform is not None:
            entry["transform"] = self.transform
        return entry

    @property
    def object_type(self) -> str:
        return "companies" if self.entity == "customer" else "contacts"


# Every direction and every rule: LATEST_WINS, WARP_WINS, HUBSPOT_WINS, MANUAL
# bidirectional fields, one field each way, on the company and on the contact.
_BOTH, _CO, _CT = "BIDIRECTIONAL", "customer", "contact"
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("company_name", _CO, "name", "company_name", _BOTH, "LATEST_WINS", "text"),
    FieldSpec("status", _CO, "warp_status", "status", _BOTH, "WARP_WINS", "status"),
    FieldSpec(
        "credit_limit", _CO, "warp_credit_limit", "credit_limit", _BOTH, "HUBSPOT_WINS", "money"
    ),
    FieldSpec("ban", _CO, "warp_ban", "ban", "WARP_TO_HUBSPOT", "WARP_WINS", "text"),
    FieldSpec(
        "legal_name",
        _CO,
        "warp_legal_name",
        "legal_name",
        "HUBSPOT_TO_WARP",
        "HUBSPOT_WINS",
        "text",
    ),
    FieldSpec("payment_terms", _CO, "warp_payment_terms", "payment_terms", _BOTH, "MANUAL", "int"),
    FieldSpec("contact_phone", _CT, "phone", "contact.phone", _BOTH, "LATEST_WINS", "text"),
    FieldSpec("contact_email_address", _CT, "email", "contact.email", _BOTH, "WARP_WINS", "text"),
    # The company's domain derives from the contact's email, as in WARP's default
    # configuration: a contact plan's WARP write feeds a company property (issue 22).
    FieldSpec(
        "contact_email",
        _CO,
        "domain",
        "contact.email",
        "WARP_TO_HUBSPOT",
        "WARP_WINS",
        "domain",
        derived_from="contact_email_address",
        transform="email_to_domain",
    ),
)
BY_NAME = {spec.name: spec for spec in FIELDS}


def domain_of(email: str) -> str:
    """``email_to_domain``, written down independently: the part after the last @, lower case."""
    return email.rpartition("@")[2].strip().lower()


# The custom company properties this configuration needs beyond WARP's own.
CUSTOM_PROPERTIES = (("warp_legal_name", "string"), ("warp_payment_terms", "number"))


def config_rows() -> dict[str, dict[str, dict[str, str]]]:
    """The two global configuration rows (by name) that replace the seeded defaults."""
    rows: dict[str, dict[str, dict[str, str]]] = {
        "default_customer_sync": {},
        "default_contact_sync": {},
    }
    for spec in FIELDS:
        row = "default_customer_sync" if spec.entity == "customer" else "default_contact_sync"
        rows[row][spec.name] = spec.entry()
    return rows


@dataclass(frozen=True)
class Edit:
    """One genuine edit: the value (HubSpot's canonical form) and when it was made."""

    value: str
    at: datetime


@dataclass(frozen=True)
class Outcome:
    """A settled state of one field: each side's value and whether a MANUAL conflict is open."""

    warp: str
    hubspot: str
    conflict: bool = False


@dataclass
class FieldModel:
    """One customer's field: the last settled state and the edits made since."""

    spec: FieldSpec
    settled: Outcome
    warp_edits: list[Edit] = field(default_factory=list)
    hubspot_edits: list[Edit] = field(default_factory=list)

    def used_values(self) -> set[str]:
        """Values this field held or was given since it last settled (for fresh statuses)."""
        values = {self.settled.warp, self.settled.hubspot}
        return values | {e.value for e in (*self.warp_edits, *self.hubspot_edits)}

    def expected(self, source: Outcome | None = None) -> list[Outcome]:
        """Every outcome the rules allow for this field once everything has settled.

        ``source``: for a derived field, the settled outcome of the field it derives
        from; its WARP value is then that one's, in this field's form, on both sides.
        """
        spec, settled = self.spec, self.settled
        if spec.derived_from is not None:
            assert source is not None
            value = domain_of(source.warp)
            return [Outcome(value, value)]
        w = self.warp_edits[-1] if self.warp_edits else None
        h = self.hubspot_edits[-1] if self.hubspot_edits else None
        if spec.direction == "WARP_TO_HUBSPOT":
            value = w.value if w else settled.warp
            return [Outcome(value, value)]
        if spec.direction == "HUBSPOT_TO_WARP":
            value = h.value if h else settled.hubspot
            return [Outcome(value, value)]
        if settled.conflict:
            # An open MANUAL conflict writes neither side until someone resolves it,
            # and fresh values never make the sides agree by chance.
            return [
                Outcome(w.value if w else settled.warp, h.value if h else settled.hubspot, True)
            ]
        if w is None and h is None:
            return [settled]
        if h is None:
            assert w is not None
            return [Outcome(w.value, w.value)]
        if w is None:
            return [Outcome(h.value, h.value)]
        warp_wins, hub_wins = Outcome(w.value, w.value), Outcome(h.value, h.value)
        gap = (w.at - h.at).total_seconds()
        if spec.rule == "MANUAL":
            # The edits crossed one after the other (the later one wins), or they met
            # as a conflict that holds each side's own latest edit.
            later = [warp_wins] if gap > TIE else [hub_wins] if gap < -TIE else []
            return [*(later or [warp_wins, hub_wins]), Outcome(w.value, h.value, True)]
        if spec.rule == "LATEST_WINS":
            if abs(gap) <= TIE:
                return [warp_wins, hub_wins]
            return [warp_wins if gap > 0 else hub_wins]
        # WARP_WINS / HUBSPOT_WINS: the winner's edit made last always wins (either it
        # crossed last, or both met and the rule chose it). The loser's edit made last
        # wins only if the winner's had already crossed: both outcomes are possible.
        winner_last = gap > TIE if spec.rule == "WARP_WINS" else gap < -TIE
        winner = warp_wins if spec.rule == "WARP_WINS" else hub_wins
        return [winner] if winner_last else [warp_wins, hub_wins]

    def settle(self, observed: Outcome) -> None:
        """Start a new window from what was observed (after it was checked)."""
        self.settled = observed
        self.warp_edits.clear()
        self.hubspot_edits.clear()
