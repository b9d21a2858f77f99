"""Searching one object type: a page, every match past the 10,000 cap, IN lists.

:class:`SearchApi` is the search half of :class:`shared.hubspot._objects.ObjectsApi`.
Searches draw on the limiter's search bucket, apart from every other call's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from shared.hubspot._api import ApiClient
from shared.hubspot.models import HubSpotObject, ObjectType, SearchPage
from shared.hubspot.ratelimit import Bucket

SEARCH_PAGE_MAX = 200
SEARCH_RESULT_CAP = 10_000  # paging a search past 10,000 results is a 400 (§3.4)
# HubSpot refuses search bodies over 3,000 characters (§3.4); leave room for the rest.
SEARCH_IN_CHARS = 2_000


class SearchApi:
    """CRM v3 search on one object type."""

    def __init__(self, client: ApiClient, object_type: ObjectType) -> None:
        self._client = client
        self.object_type = object_type
        self._path = f"/crm/v3/objects/{object_type}"

    def search(
        self,
        filter_groups: Sequence[Mapping[str, Any]] = (),
        *,
        sort: tuple[str, str] | None = None,
        properties: Sequence[str] = (),
        limit: int = 100,
        after: str | None = None,
        query: str | None = None,
    ) -> SearchPage:
        """One search page. ``sort`` is (property, ``ASCENDING``|``DESCENDING``): one only."""
        if not 1 <= limit <= SEARCH_PAGE_MAX:
            raise ValueError(f"search limit must be 1..{SEARCH_PAGE_MAX}")
        body: dict[str, Any] = {
            "filterGroups": [dict(g) for g in filter_groups],
            "properties": list(properties),
            "limit": limit,
        }
        if sort:
            body["sorts"] = [{"propertyName": sort[0], "direction": sort[1]}]
        if after:
            body["after"] = after
        if query:
            body["query"] = query
        response = self._client.request(
            "POST",
            f"{self._path}/search",
            json=body,
            op=f"{self.object_type}.search",
            bucket=Bucket.SEARCH,
        )
        return SearchPage.from_json(response.json())

    def search_all(
        self,
        filter_groups: Sequence[Mapping[str, Any]] = (),
        *,
        properties: Sequence[str] = (),
        page_size: int = SEARCH_PAGE_MAX,
    ) -> Iterator[HubSpotObject]:
        """Every match, past the 10,000-result cap, in ascending ``hs_object_id`` order.

        Pages by ``after`` within a window and, before the window reaches 10,000
        results, starts a new one with ``hs_object_id > last id`` added to every
        filter group. Each group then holds one more filter, so a query already at
        HubSpot's filter limits is refused (400) rather than silently cut short.
        """
        last_id: str | None = None
        while True:
            groups = _after_id(filter_groups, last_id)
            after: str | None = None
            while True:
                page = self.search(
                    groups,
                    sort=("hs_object_id", "ASCENDING"),
                    properties=properties,
                    limit=page_size,
                    after=after,
                )
                for record in page.results:
                    last_id = record.id
                    yield record
                if page.after is None or not page.results:
                    return
                after = page.after
                if int(after) + page_size > SEARCH_RESULT_CAP:
                    break  # next window: continue after last_id

    def search_in(
        self, prop: str, values: Iterable[str], *, properties: Sequence[str] = ()
    ) -> Iterator[HubSpotObject]:
        """Every record whose ``prop`` is one of ``values``, in as few IN searches as fit.

        The values are split so that each search body stays under HubSpot's size limit.
        """
        for chunk in _chunks_by_size(sorted(values), SEARCH_IN_CHARS):
            groups = [{"filters": [{"propertyName": prop, "operator": "IN", "values": chunk}]}]
            yield from self.search_all(groups, properties=properties)


def _chunks_by_size(values: list[str], max_chars: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for value in values:
        cost = len(json.dumps(value)) + 1
        if chunk and size + cost > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.append(value)
        size += cost
    if chunk:
        yield chunk


def _after_id(
    filter_groups: Sequence[Mapping[str, Any]], last_id: str | None
) -> list[dict[str, Any]]:
    groups = [dict(g) for g in filter_groups]
    if last_id is None:
        return groups
    bound = {"propertyName": "hs_object_id", "operator": "GT", "value": last_id}
    if not groups:
        return [{"filters": [bound]}]
    return [{**g, "filters": [*g.get("filters", []), bound]} for g in groups]
