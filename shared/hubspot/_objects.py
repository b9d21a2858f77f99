"""Records of one object type: single reads and writes, batches, listing.

Batch results are matched to inputs by id, unique property value or
``objectWriteTraceId``, never by position: HubSpot's ``results`` are not in
input order (hubspot-api.md §3.3). Per-record failures of a 207 are returned
beside the successes (:class:`BatchResult`), not raised; so are the inputs of a
batch update HubSpot refused whole (400), found by splitting the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from functools import partial
from typing import Any

from shared.hubspot._associations import default_association_type
from shared.hubspot._search import SearchApi
from shared.hubspot.errors import HubSpotError, ValidationError
from shared.hubspot.models import (
    MERGED_IDS,
    BatchResult,
    HubSpotObject,
    ObjectType,
    Properties,
    next_after,
)

log = logging.getLogger("warp_hubspot_sync.hubspot")

BATCH_SIZE = 100  # HubSpot's maximum records per batch call (§3.2)
# ... and per batch read asking for property history (docs/hubspot.md, item 1)
HISTORY_BATCH_SIZE = 50
LIST_PAGE_SIZE = 100
LIST_PAGE_SIZE_WITH_HISTORY = 50  # the official client's page size with propertiesWithHistory


class PendingBatch:
    """A batch read in flight: :meth:`get` waits only for the page holding a key.

    A caller that works through records in the order it asked for them (the sync
    engine planning customer after customer) starts on the first page while the
    later ones are still on their way.
    """

    def __init__(self, chunks: Sequence[Sequence[str]], futures: Sequence[Future[BatchResult]]):
        self._page_of = {key: page for page, chunk in enumerate(chunks) for key in chunk}
        self._futures = list(futures)
        self._collected: set[int] = set()
        self._outcome = BatchResult()

    def get(self, key: str) -> HubSpotObject | None:
        """The record read for ``key`` (None: not asked for, or HubSpot had none)."""
        page = self._page_of.get(str(key))
        if page is None:
            return None
        self._collect(page)
        return self._outcome.results.get(str(key))

    def result(self) -> BatchResult:
        """Every page's outcome, merged (waits for all)."""
        for page in range(len(self._futures)):
            self._collect(page)
        return self._outcome

    def _collect(self, page: int) -> None:
        if page in self._collected:
            return
        try:
            outcome = self._futures[page].result()
        except BaseException:
            wait(self._futures)  # none left running unseen when the error goes up
            raise
        self._outcome.merge(outcome)
        self._collected.add(page)


class ObjectsApi(SearchApi):
    """CRM v3 operations on one object type (``client.companies``, ``client.contacts``).

    Its searches are :class:`SearchApi`'s.
    """

    # --- single records ---------------------------------------------------------------

    def get(
        self,
        object_id: str,
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        associations: Sequence[ObjectType] = (),
        id_property: str | None = None,
        archived: bool = False,
    ) -> HubSpotObject:
        """One record by id (or by a unique property's value with ``id_property``)."""
        params = {
            "properties": _csv(properties),
            "propertiesWithHistory": _csv(properties_with_history),
            "associations": _csv(associations),
            "idProperty": id_property,
            "archived": "true" if archived else None,
        }
        response = self._client.request(
            "GET",
            f"{self._path}/{object_id}",
            params={k: v for k, v in params.items() if v is not None},
            op=f"{self.object_type}.get",
        )
        return HubSpotObject.from_json(response.json())

    def create(
        self,
        properties: Properties,
        *,
        associate_with: Sequence[tuple[ObjectType, str]] = (),
    ) -> HubSpotObject:
        """Create one record, optionally associated (default type) with existing records."""
        body: dict[str, Any] = {"properties": dict(properties)}
        if associate_with:
            body["associations"] = [
                {
                    "to": {"id": to_id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": default_association_type(self.object_type, kind),
                        }
                    ],
                }
                for kind, to_id in associate_with
            ]
        response = self._client.request(
            "POST", self._path, json=body, op=f"{self.object_type}.create", idempotent=False
        )
        return HubSpotObject.from_json(response.json())

    def update(
        self, object_id: str, properties: Properties, *, id_property: str | None = None
    ) -> HubSpotObject:
        """Overwrite some properties of one record (``""`` clears a value)."""
        response = self._client.request(
            "PATCH",
            f"{self._path}/{object_id}",
            params={"idProperty": id_property} if id_property else None,
            json={"properties": dict(properties)},
            op=f"{self.object_type}.update",
        )
        return HubSpotObject.from_json(response.json())

    def archive(self, object_id: str) -> None:
        """Archive (soft-delete) one record; HubSpot keeps it restorable for 90 days."""
        self._client.request(
            "DELETE", f"{self._path}/{object_id}", op=f"{self.object_type}.archive"
        )

    # --- batches ----------------------------------------------------------------------

    def batch_read(
        self,
        ids: Iterable[str],
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        id_property: str | None = None,
    ) -> BatchResult:
        """Read many records, 100 per call (50 with history; several in flight); keyed by
        id or ``id_property``."""
        return self.start_batch_read(
            ids,
            properties=properties,
            properties_with_history=properties_with_history,
            id_property=id_property,
        ).result()

    def start_batch_read(
        self,
        ids: Iterable[str],
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        id_property: str | None = None,
    ) -> PendingBatch:
        """Start :meth:`batch_read`'s calls and return at once; records arrive page by page."""
        keys = list(dict.fromkeys(str(i) for i in ids))
        # A read by id may answer an old id with the record it was merged into (a new
        # id): asking for its merged ids lets that answer find its input(s) again.
        wanted = list(properties) if id_property else [*properties, MERGED_IDS]

        def read(chunk: Sequence[str]) -> BatchResult:
            body: dict[str, Any] = {
                "inputs": [{"id": key} for key in chunk],
                "properties": list(dict.fromkeys(wanted)),
                "propertiesWithHistory": list(properties_with_history),
            }
            if id_property:
                body["idProperty"] = id_property
                return self._batch(
                    "read", body, chunk, partial(_key_of, id_property=id_property), idempotent=True
                )
            return self._batch("read", body, chunk, _ids_of, idempotent=True)

        size = HISTORY_BATCH_SIZE if properties_with_history else BATCH_SIZE
        chunks = list(_chunks(keys, size))
        futures = self._client.start_concurrently([partial(read, c) for c in chunks])
        return PendingBatch(chunks, futures)

    def batch_create(self, items: Mapping[str, Properties]) -> BatchResult:
        """Create many records, 100 per call, keyed by the caller's keys.

        Each key is sent as the input's ``objectWriteTraceId``, which both matches
        results to inputs and makes HubSpot answer 207 per record instead of
        failing the whole batch for one bad input.
        """
        outcome = BatchResult()
        for chunk in _chunks(list(items)):
            body = {
                "inputs": [
                    {"properties": dict(items[key]), "objectWriteTraceId": key} for key in chunk
                ]
            }
            outcome.merge(
                self._batch(
                    "create", body, chunk, lambda r: r.object_write_trace_id, idempotent=False
                )
            )
        return outcome

    def batch_update(
        self, items: Mapping[str, Properties], *, id_property: str | None = None
    ) -> BatchResult:
        """Update many records, 100 per call; ``items`` maps id (or unique value) to values."""
        return self._keyed_batch("update", items, id_property)

    def batch_upsert(self, items: Mapping[str, Properties], *, id_property: str) -> BatchResult:
        """Create or update by a unique property, 100 per call; results carry ``new``."""
        return self._keyed_batch("upsert", items, id_property)

    def _keyed_batch(
        self, action: str, items: Mapping[str, Properties], id_property: str | None
    ) -> BatchResult:
        outcome = BatchResult()
        for chunk in _chunks(list(items)):
            outcome.merge(self._isolating(action, items, chunk, id_property))
        return outcome

    def _isolating(
        self,
        action: str,
        items: Mapping[str, Properties],
        keys: Sequence[str],
        id_property: str | None,
    ) -> BatchResult:
        """One keyed batch write; a batch HubSpot refuses whole is split until each
        refused input stands alone, so the valid ones still land.

        HubSpot may answer a batch update holding one invalid value (a deleted enum
        option, a number it refuses) with a 400 for the whole batch, nothing written
        (docs/hubspot.md, item 3). Halving finds k refused inputs among n in about
        2k·log2(n/k) more calls; an input refused on its own is returned as that
        input's error (HubSpot's message, permanent), like a 207's.
        """
        # Each input's key doubles as its objectWriteTraceId, which is how a result
        # finds its key again (or by the id property when HubSpot leaves the trace out).
        inputs = []
        for key in keys:
            entry: dict[str, Any] = {
                "id": key,
                "properties": dict(items[key]),
                "objectWriteTraceId": key,
            }
            if id_property:
                entry["idProperty"] = id_property
            inputs.append(entry)
        try:
            return self._batch(
                action,
                {"inputs": inputs},
                keys,
                lambda r: r.object_write_trace_id or _key_of(r, id_property),
                idempotent=True,
            )
        except ValidationError as refused:
            if len(keys) == 1:
                return BatchResult(errors=[_refused_input(refused, keys[0])])
            log.warning(
                "HubSpot refused a batch whole; splitting it to find the refused inputs",
                extra={
                    "fields": {
                        "op": f"{self.object_type}.batch_{action}",
                        "inputs": len(keys),
                        **refused.as_dict(),
                    }
                },
            )
            middle = len(keys) // 2
            outcome = self._isolating(action, items, keys[:middle], id_property)
            outcome.merge(self._isolating(action, items, keys[middle:], id_property))
            return outcome

    def _batch(
        self,
        action: str,
        body: Mapping[str, Any],
        keys: Sequence[str],
        key_of: Callable[[HubSpotObject], str | Sequence[str] | None],
        *,
        idempotent: bool,
    ) -> BatchResult:
        response = self._client.request(
            "POST",
            f"{self._path}/batch/{action}",
            json=body,
            op=f"{self.object_type}.batch_{action}",
            idempotent=idempotent,
        )
        data = response.json()
        outcome = BatchResult(
            errors=[HubSpotError.from_batch_error(e) for e in data.get("errors") or []]
        )
        wanted = set(keys)
        unmatched = 0
        for raw in data.get("results") or []:
            record = HubSpotObject.from_json(raw)
            found = key_of(record)
            keys = [found] if isinstance(found, str) else found or ()
            matched = [k for k in keys if k in wanted]
            for key in matched:
                outcome.results[key] = record
            if not matched:
                unmatched += 1
        missing = wanted - outcome.results.keys() - outcome.failed_keys()
        if missing or unmatched:
            outcome.errors.append(
                HubSpotError(
                    f"{len(missing)} input(s) got neither a result nor an error"
                    f" and {unmatched} result(s) matched no input",
                    status=response.status_code,
                    category="UNMATCHED_BATCH_RESULT",
                    context={"keys": sorted(missing)},
                )
            )
        return outcome

    # --- listing ----------------------------------------------------------------------

    def list_page(
        self,
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        limit: int = LIST_PAGE_SIZE,
        after: str | None = None,
        archived: bool = False,
    ) -> tuple[list[HubSpotObject], str | None]:
        """One page of the list endpoint: (records, next ``after`` or None)."""
        params = {
            "limit": limit,
            "after": after,
            "properties": _csv(properties),
            "propertiesWithHistory": _csv(properties_with_history),
            "archived": "true" if archived else None,
        }
        data = self._client.request(
            "GET",
            self._path,
            params={k: v for k, v in params.items() if v is not None},
            op=f"{self.object_type}.list",
        ).json()
        return [HubSpotObject.from_json(r) for r in data.get("results") or []], next_after(data)

    def iterate(
        self,
        *,
        properties: Sequence[str] = (),
        properties_with_history: Sequence[str] = (),
        archived: bool = False,
    ) -> Iterator[HubSpotObject]:
        """Every record, page after page (50 a page with history, else 100)."""
        limit = LIST_PAGE_SIZE_WITH_HISTORY if properties_with_history else LIST_PAGE_SIZE
        after: str | None = None
        while True:
            records, after = self.list_page(
                properties=properties,
                properties_with_history=properties_with_history,
                limit=limit,
                after=after,
                archived=archived,
            )
            yield from records
            if after is None:
                return


def _csv(values: Iterable[str]) -> str | None:
    joined = ",".join(values)
    return joined or None


def _chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _refused_input(error: ValidationError, key: str) -> ValidationError:
    """HubSpot's 400 for a batch of one, as that input's own error (``context.keys``)."""
    return ValidationError(
        error.message,
        status=error.status,
        category=error.category,
        correlation_id=error.correlation_id,
        context={"keys": [key]},
    )


def _ids_of(record: HubSpotObject) -> list[str]:
    """The ids a record read by id answers: its own and, once merged, its old ones."""
    return [record.id, *record.merged_ids]


def _key_of(record: HubSpotObject, id_property: str | None) -> str | None:
    if id_property:
        value = record.properties.get(id_property)
        return str(value) if value is not None else None
    return record.id
