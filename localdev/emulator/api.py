"""The CRM endpoints: objects, batch, search, merge, properties, associations.

Transport-free: a handler takes a parsed ``Call`` and returns (status, JSON body
or None), raising ``ApiError`` for HubSpot-shaped failures. The server does
authentication, rate limits and faults around it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from localdev.emulator.errors import ApiError, not_found, validation
from localdev.emulator.properties import (
    OBJECT_TYPES,
    SINGULAR,
    PropertyRegistry,
    canonical_type,
)
from localdev.emulator.render import (
    batch_body,
    now_iso,
    render_associations,
    render_record,
)
from localdev.emulator.search import run_search
from localdev.emulator.store import (
    ASSOCIATION_TYPE_IDS,
    PRIMARY_TYPE_IDS,
    Record,
    Source,
    Store,
    UniqueViolation,
)

BATCH_MAX = 100
LIST_MAX = 100
# A batch read asking for property history takes 50 inputs at most (docs/hubspot.md, item 1).
HISTORY_BATCH_MAX = 50
HISTORY_BATCH_MESSAGE = (
    "The maximum number of inputs supported in a batch request for property histories is 50."
    " Please reduce the number of items and try again"
)


@dataclass
class Call:
    """One API request, parsed."""

    method: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    source: Source
    object_type: str = ""

    def multi(self, name: str) -> list[str]:
        """A multi-valued query parameter, comma-separated and/or repeated."""
        return [v for raw in self.query.get(name, []) for v in raw.split(",") if v]

    def flag(self, name: str) -> bool:
        """A boolean query parameter (default false)."""
        return (self.query.get(name) or ["false"])[-1].lower() == "true"


Result = tuple[int, Any]
Handler = Callable[[Call], Result]


@dataclass
class Route:
    """A method + path template bound to a handler."""

    method: str
    template: str
    handler: Handler
    search: bool = False
    # A POST that only reads (search, batch read): HubSpot asks for a read scope there.
    reads: bool = False
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "$")

    def scope(self, object_type: str) -> str:
        """The granular scope HubSpot requires of a token for this call on ``object_type``
        (docs/hubspot.md, "Scopes"): schemas for property definitions, objects otherwise."""
        kind = "schemas" if self.template.startswith("/crm/v3/properties/") else "objects"
        access = "read" if self.method == "GET" or self.reads else "write"
        return f"crm.{kind}.{object_type}.{access}"


class CrmApi:
    """The CRM handlers over a ``Store``; ``rng`` scrambles batch result order like HubSpot."""

    def __init__(self, store: Store, properties: PropertyRegistry, rng: random.Random) -> None:
        self.store, self.properties, self.rng = store, properties, rng
        # HubSpot documents per-record 207s for batch create only; a batch update with
        # one invalid value is refused whole (400) by default (docs/hubspot.md, item 3).
        self.update_multi_status = False
        o = "/crm/v3/objects/{type}"
        self.routes = [
            Route("POST", o + "/search", self.search, search=True, reads=True),
            Route("POST", o + "/merge", self.merge),
            Route("POST", o + "/batch/read", self.batch_read, reads=True),
            Route("POST", o + "/batch/create", self.batch_create),
            Route("POST", o + "/batch/update", self.batch_update),
            Route("POST", o + "/batch/upsert", self.batch_upsert),
            Route("POST", o + "/batch/archive", self.batch_archive),
            Route("GET", o, self.list_objects),
            Route("POST", o, self.create),
            Route("GET", o + "/{id}", self.get),
            Route("PATCH", o + "/{id}", self.update),
            Route("DELETE", o + "/{id}", self.archive),
            Route("GET", "/crm/v3/properties/{type}/groups", self.list_groups),
            Route("POST", "/crm/v3/properties/{type}/groups", self.create_group),
            Route("GET", "/crm/v3/properties/{type}", self.list_properties),
            Route("POST", "/crm/v3/properties/{type}", self.create_property),
            Route("GET", "/crm/v3/properties/{type}/{name}", self.get_property),
            Route(
                "PUT",
                "/crm/v4/objects/{type}/{id}/associations/default/{to}/{toId}",
                self.associate,
            ),
            Route(
                "PUT",
                "/crm/v4/objects/{type}/{id}/associations/{to}/{toId}",
                self.associate_labeled,
            ),
            Route("GET", "/crm/v4/objects/{type}/{id}/associations/{to}", self.list_associations),
            Route(
                "POST",
                "/crm/v3/associations/{type}/{to}/batch/read",
                self.batch_read_associations,
                reads=True,
            ),
        ]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route and path parameters for a request, or None."""
        for route in self.routes:
            if route.method == method:
                found = route.regex.match(path)
                if found:
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    # -- single objects ----------------------------------------------------------

    def list_objects(self, call: Call) -> Result:
        limit = min(_int(call.query.get("limit", ["10"])[-1], "limit"), LIST_MAX)
        after = _int(call.query.get("after", ["0"])[-1] or "0", "after")
        with self.store.lock:
            page, cursor = self.store.page(
                call.object_type, archived=call.flag("archived"), after=after, limit=max(1, limit)
            )
            results = [self._render(call, r) for r in page]
        body: dict[str, Any] = {"results": results}
        if cursor is not None:
            body["paging"] = {"next": {"after": str(cursor), "link": f"?after={cursor}"}}
        return 200, body

    def get(self, call: Call) -> Result:
        with self.store.lock:
            record = self._find(
                call.object_type,
                call.params["id"],
                _last(call, "idProperty"),
                archived=call.flag("archived"),
            )
            if record is None:
                raise not_found(call.params["id"])
            return 200, self._render(call, record)

    def create(self, call: Call) -> Result:
        body = _object(call.body)
        values = self.properties.normalize(call.object_type, _object(body.get("properties", {})))
        with self.store.lock:
            targets = self._association_targets(call.object_type, body.get("associations") or [])
            record = self._create(call.object_type, values, call.source)
            for target, primary in targets:
                self.store.associate(record, target, call.source, primary=primary)
            return 201, render_record(record, properties=list(values))

    def update(self, call: Call) -> Result:
        body = _object(call.body)
        values = self.properties.normalize(call.object_type, _object(body.get("properties", {})))
        with self.store.lock:
            record = self._find(call.object_type, call.params["id"], _last(call, "idProperty"))
            if record is None:
                raise not_found(call.params["id"])
            self._update(record, values, call.source)
            return 200, render_record(record, properties=list(values))

    def archive(self, call: Call) -> Result:
        with self.store.lock:
            record = self._find(call.object_type, call.params["id"], None)
            if record is not None:
                self.store.archive(record, call.source)
        return 204, None

    def merge(self, call: Call) -> Result:
        body = _object(call.body)
        primary_id, other_id = (
            str(body.get("primaryObjectId", "")),
            str(body.get("objectIdToMerge", "")),
        )
        if not primary_id or not other_id or primary_id == other_id:
            raise validation("primaryObjectId and objectIdToMerge must name two different records")
        with self.store.lock:
            primary = self._find(call.object_type, primary_id, None)
            other = self._find(call.object_type, other_id, None)
            if primary is None or other is None:
                raise not_found(primary_id if primary is None else other_id)
            merged = self.store.merge(primary, other, call.source)
            return 200, render_record(merged)

    # -- batch -------------------------------------------------------------------

    def batch_read(self, call: Call) -> Result:
        body, started = _object(call.body), now_iso()
        inputs = _inputs(body)
        props, history = body.get("properties") or [], body.get("propertiesWithHistory") or []
        if history and len(inputs) > HISTORY_BATCH_MAX:
            raise validation(HISTORY_BATCH_MESSAGE)
        id_property = body.get("idProperty")
        with self.store.lock:
            found, missing, seen = [], [], set()
            for item in inputs:
                record = self._find(call.object_type, str(item.get("id", "")), id_property)
                if record is None:
                    missing.append(str(item.get("id", "")))
                elif record.id not in seen:
                    # Two old ids of one merged record: the record once (UNCONFIRMED
                    # whether HubSpot repeats it; a client must match it by
                    # hs_merged_object_ids either way).
                    seen.add(record.id)
                    found.append(render_record(record, properties=props, with_history=history))
        errors = []
        if missing:
            errors.append(
                ApiError(
                    404,
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {SINGULAR[call.object_type]} objects, they may be "
                    "deleted or not exist. Check that ids are valid.",
                    context={"ids": missing},
                ).standard_error()
            )
        return (207 if errors else 200), batch_body(self._scramble(found), errors, started)

    def batch_create(self, call: Call) -> Result:
        started, inputs = now_iso(), _inputs(_object(call.body))
        prepared = [self._prepare(call.object_type, item) for item in inputs]
        self._fail_whole_unless_traced(inputs, prepared)
        results, errors = [], []
        with self.store.lock:
            for item, ready in zip(inputs, prepared, strict=True):
                if isinstance(ready, ApiError):
                    errors.append(_traced(ready, item))
                    continue
                try:
                    targets = self._association_targets(
                        call.object_type, item.get("associations") or []
                    )
                    record = self._create(call.object_type, ready, call.source)
                except ApiError as exc:
                    errors.append(_traced(exc, item))
                    continue
                for target, primary in targets:
                    self.store.associate(record, target, call.source, primary=primary)
                results.append(_with_trace(render_record(record, properties=list(ready)), item))
        return (207 if errors else 201), batch_body(self._scramble(results), errors, started)

    def batch_update(self, call: Call) -> Result:
        started, inputs = now_iso(), _inputs(_object(call.body))
        ids = [str(i.get("id", "")) for i in inputs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise validation(
                f"Duplicate IDs found in batch input: {duplicates}. IDs must be unique"
            )
        prepared = [self._prepare(call.object_type, item) for item in inputs]
        if self.update_multi_status:
            self._fail_whole_unless_traced(inputs, prepared)
        else:
            _fail_whole(prepared)
        results, errors, missing = [], [], []
        with self.store.lock:
            for item, ready in zip(inputs, prepared, strict=True):
                if isinstance(ready, ApiError):
                    errors.append(_traced(ready, item))
                    continue
                record = self._find(
                    call.object_type, str(item.get("id", "")), item.get("idProperty")
                )
                if record is None:
                    missing.append(str(item.get("id", "")))
                    continue
                try:
                    self._update(record, ready, call.source)
                except ApiError as exc:
                    errors.append(_traced(exc, item))
                    continue
                results.append(_with_trace(render_record(record, properties=list(ready)), item))
        if missing:
            errors.append(not_found(missing[0]).standard_error() | {"context": {"ids": missing}})
        return (207 if errors else 200), batch_body(self._scramble(results), errors, started)

    def batch_upsert(self, call: Call) -> Result:
        started, inputs = now_iso(), _inputs(_object(call.body))
        prepared = [self._prepare(call.object_type, item) for item in inputs]
        self._fail_whole_unless_traced(inputs, prepared)
        results, errors = [], []
        with self.store.lock:
            for item, ready in zip(inputs, prepared, strict=True):
                id_property = str(item.get("idProperty") or "")
                try:
                    if isinstance(ready, ApiError):
                        raise ready
                    if id_property not in self.properties.unique_names(call.object_type):
                        raise validation(f"idProperty {id_property!r} is not a unique property")
                    key = str(item.get("id", ""))
                    record = self.store.find_unique(call.object_type, id_property, key)
                    new = record is None
                    if record is None:
                        record = self._create(
                            call.object_type, {**ready, id_property: key}, call.source
                        )
                    else:
                        self._update(record, ready, call.source)
                except ApiError as exc:
                    errors.append(_traced(exc, item))
                    continue
                rendered = render_record(record, properties=list(ready))
                results.append(_with_trace({**rendered, "new": new}, item))
        return (207 if errors else 200), batch_body(self._scramble(results), errors, started)

    def batch_archive(self, call: Call) -> Result:
        inputs = _inputs(_object(call.body))
        with self.store.lock:
            for item in inputs:
                record = self._find(call.object_type, str(item.get("id", "")), None)
                if record is not None:
                    self.store.archive(record, call.source)
        return 204, None

    # -- search --------------------------------------------------------------------

    def search(self, call: Call) -> Result:
        body = _object(call.body)
        with self.store.lock:
            page = run_search(
                call.object_type,
                body,
                self.store.searchable(call.object_type),
                lambda n: self.properties.get(call.object_type, n),
            )
            results = [
                render_record(r, properties=body.get("properties") or []) for r in page.results
            ]
        out: dict[str, Any] = {"total": page.total, "results": results}
        if page.next_after is not None:
            out["paging"] = {"next": {"after": page.next_after}}
        return 200, out

    # -- properties ------------------------------------------------------------------

    def list_properties(self, call: Call) -> Result:
        return 200, {"results": [p.to_json() for p in self.properties.all(call.object_type)]}

    def get_property(self, call: Call) -> Result:
        prop = self.properties.get(call.object_type, call.params["name"])
        if prop is None:
            raise ApiError(
                404, "OBJECT_NOT_FOUND", f"Unable to find property {call.params['name']}"
            )
        return 200, prop.to_json()

    def create_property(self, call: Call) -> Result:
        return 201, self.properties.create(
            call.object_type, _object(call.body), now_iso()
        ).to_json()

    def list_groups(self, call: Call) -> Result:
        return 200, {"results": self.properties.groups(call.object_type)}

    def create_group(self, call: Call) -> Result:
        return 201, self.properties.create_group(call.object_type, _object(call.body))

    # -- associations ----------------------------------------------------------------

    def associate(self, call: Call, *, primary: bool = False) -> Result:
        to_type = _type(call.params["to"])
        started = now_iso()
        with self.store.lock:
            a = self._find(call.object_type, call.params["id"], None)
            b = self._find(to_type, call.params["toId"], None)
            if a is None or b is None:
                raise not_found(call.params["id"] if a is None else call.params["toId"])
            self._check_pair(call.object_type, to_type)
            links = self.store.associate(a, b, call.source, primary=primary)
        results = [
            {
                "from": {"id": str(x.id)},
                "to": {"id": str(y.id)},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": t,
                },
            }
            for x, y, t in links
        ]
        return 200, batch_body(results, [], started)

    def associate_labeled(self, call: Call) -> Result:
        """v4 "associate records with a label": a body of association types, e.g. primary (1/2)."""
        to_type = _type(call.params["to"])
        self._check_pair(call.object_type, to_type)
        specs = call.body if isinstance(call.body, list) else None
        if not specs:
            raise validation("expected a JSON array of association types")
        type_ids = {int(_object(spec).get("associationTypeId", 0)) for spec in specs}
        allowed = {
            ASSOCIATION_TYPE_IDS[(call.object_type, to_type)],
            PRIMARY_TYPE_IDS[(call.object_type, to_type)],
        }
        if not type_ids <= allowed:
            raise validation(f"Invalid association types {sorted(type_ids)} for this pair")
        primary = PRIMARY_TYPE_IDS[(call.object_type, to_type)] in type_ids
        _, created = self.associate(call, primary=primary)
        first = created["results"][0]  # ids resolved (an old, merged id answers the new one)
        # HubSpot answers 201 with the pair and its labels (LabelsBetweenObjectPair, as
        # the SDK's spec says); HubSpot-defined unlabeled and primary types carry no label.
        return 201, {
            "fromObjectTypeId": OBJECT_TYPES[call.object_type],
            "fromObjectId": int(first["from"]["id"]),
            "toObjectTypeId": OBJECT_TYPES[to_type],
            "toObjectId": int(first["to"]["id"]),
            "labels": [],
        }

    def list_associations(self, call: Call) -> Result:
        to_type = _type(call.params["to"])
        with self.store.lock:
            record = self._find(call.object_type, call.params["id"], None)
            if record is None:
                raise not_found(call.params["id"])
            links = self.store.associations(call.object_type, record.id, to_type)
        results = [
            {
                "toObjectId": to_id,
                "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": t, "label": None} for t in types
                ],
            }
            for to_id, types in links
        ]
        return 200, {"results": results}

    def batch_read_associations(self, call: Call) -> Result:
        to_type, started = _type(call.params["to"]), now_iso()
        results = []
        with self.store.lock:
            for item in _inputs(_object(call.body)):
                record = self._find(call.object_type, str(item.get("id", "")), None)
                links = (
                    []
                    if record is None
                    else self.store.associations(call.object_type, record.id, to_type)
                )
                if record is not None and links:
                    label = f"{SINGULAR[call.object_type]}_to_{SINGULAR[to_type]}".lower()
                    results.append(
                        {
                            "from": {"id": str(record.id)},
                            "to": [{"id": str(i), "type": label} for i, _ in links],
                        }
                    )
        return 200, batch_body(results, [], started)

    # -- helpers -----------------------------------------------------------------------

    def _render(self, call: Call, record: Record) -> dict[str, Any]:
        to_types = [t for t in (canonical_type(a) for a in call.multi("associations")) if t]
        return render_record(
            record,
            properties=call.multi("properties"),
            with_history=call.multi("propertiesWithHistory"),
            associations=render_associations(self.store, record, to_types) if to_types else None,
        )

    def _find(
        self, object_type: str, key: str, id_property: str | None, *, archived: bool = False
    ) -> Record | None:
        if id_property and id_property != "hs_object_id":
            if id_property not in self.properties.unique_names(object_type):
                raise validation(f"idProperty {id_property!r} is not a unique property")
            return self.store.find_unique(object_type, id_property, key)
        if not key.isdigit():
            return None
        return self.store.get(object_type, int(key), archived=archived)

    def _prepare(self, object_type: str, item: dict[str, Any]) -> dict[str, str] | ApiError:
        try:
            return self.properties.normalize(object_type, _object(item.get("properties", {})))
        except ApiError as exc:
            return exc

    @staticmethod
    def _fail_whole_unless_traced(inputs: list[dict[str, Any]], prepared: list[Any]) -> None:
        # HubSpot answers 207 per record only when each input carries objectWriteTraceId;
        # otherwise one invalid input fails the whole request and nothing is written.
        if not all(i.get("objectWriteTraceId") for i in inputs):
            _fail_whole(prepared)

    def _create(self, object_type: str, values: dict[str, str], source: Source) -> Record:
        try:
            return self.store.create(object_type, values, source)
        except UniqueViolation as exc:
            raise _conflict(exc) from None

    def _update(self, record: Record, values: dict[str, str], source: Source) -> None:
        try:
            self.store.update(record, values, source)
        except UniqueViolation as exc:
            raise _conflict(exc) from None

    def _association_targets(
        self, object_type: str, associations: list[Any]
    ) -> list[tuple[Record, bool]]:
        """The records to associate a new one with, and whether as primary (type 1 or 2)."""
        targets = []
        for association in associations:
            to_id = str(_object(_object(association).get("to", {})).get("id", ""))
            types = association.get("types") or []
            type_ids = {int(t.get("associationTypeId", 0)) for t in types}
            match = [t for (f, t) in ASSOCIATION_TYPE_IDS if f == object_type]
            to_type = match[0] if match else ""
            primary = set(PRIMARY_TYPE_IDS.values())
            allowed = {ASSOCIATION_TYPE_IDS.get((object_type, to_type)), *primary}
            record = self.store.get(to_type, int(to_id)) if to_type and to_id.isdigit() else None
            if record is None or not type_ids or not type_ids <= allowed:
                raise validation(f"Invalid association to {to_id!r} with types {sorted(type_ids)}")
            targets.append((record, bool(type_ids & primary)))
        return targets

    @staticmethod
    def _check_pair(from_type: str, to_type: str) -> None:
        if (from_type, to_type) not in ASSOCIATION_TYPE_IDS:
            raise validation(f"No default association between {from_type} and {to_type}")

    def _scramble(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.rng.shuffle(results)
        return results


def _fail_whole(prepared: list[Any]) -> None:
    """Refuse the whole request (nothing written) for its first invalid input."""
    for ready in prepared:
        if isinstance(ready, ApiError):
            raise ready


def _conflict(exc: UniqueViolation) -> ApiError:
    noun = SINGULAR[exc.object_type].title()
    return ApiError(409, "CONFLICT", f"{noun} already exists. Existing ID: {exc.holder}")


def _traced(error: ApiError, item: dict[str, Any]) -> dict[str, Any]:
    entry = error.standard_error()
    if item.get("objectWriteTraceId"):
        entry["context"] = {
            **entry["context"],
            "objectWriteTraceId": [str(item["objectWriteTraceId"])],
        }
    return entry


def _with_trace(rendered: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    if item.get("objectWriteTraceId"):
        rendered["objectWriteTraceId"] = str(item["objectWriteTraceId"])
    return rendered


def _inputs(body: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise validation("inputs must be a list of objects")
    if len(inputs) > BATCH_MAX:
        raise validation(f"Batch input limit exceeded: {len(inputs)} inputs (maximum {BATCH_MAX})")
    return inputs


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise validation("Invalid input JSON: expected an object")
    return value


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise validation(f"{name} must be an integer, got {value!r}") from None


def _last(call: Call, name: str) -> str | None:
    values = call.query.get(name)
    return values[-1] if values else None


def _type(name: str) -> str:
    object_type = canonical_type(name)
    if object_type is None:
        raise ApiError(400, "VALIDATION_ERROR", f"Unknown object type: {name}")
    return object_type
