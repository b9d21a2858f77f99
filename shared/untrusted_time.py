"""Times that arrived from outside: aware, and within a range every layer can hold (pure).

Every time read from untrusted input passes through here: a change message's
``occurred_at`` and Pub/Sub's ``publishTime``, the API's logs cursor, a task's
``received_before``, a webhook event's ``occurredAt`` (epoch milliseconds).

Why a range: Python holds years 1-9999 only, and pg8000 converts an aware datetime
to UTC after it has sent the statement. ``0001-01-01T00:00:00+14:00`` is a valid
ISO 8601 time whose UTC form is in year 0; converting it raised mid-statement and
left the pooled connection answering every later statement with the previous one's
result (issue 21). The bounds keep a margin at the top: a stored time read back in
any session time zone (up to +15:59), or moved by a day, stays within year 9999.
Nothing this system records happened before the Unix epoch (HubSpot's times are
epoch milliseconds), so that is the bottom.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = EPOCH
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
LATEST_EPOCH_MS = (LATEST - EPOCH) // timedelta(milliseconds=1)


class UnacceptableTime(ValueError):
    """The time is naive or outside [EARLIEST, LATEST]; the message never echoes it."""


def checked_time(moment: datetime) -> datetime:
    """``moment`` in UTC if it is aware and within the bounds; else raise UnacceptableTime."""
    if moment.utcoffset() is None:
        raise UnacceptableTime("a time needs a UTC offset")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # the UTC form is before year 1 or after year 9999
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise UnacceptableTime(
            f"a time must lie between {EARLIEST:%Y-%m-%dT%H:%M:%SZ} and {LATEST:%Y-%m-%dT%H:%M:%SZ}"
        )
    return utc


def parse_time(text: str) -> datetime:
    """An ISO 8601 time from untrusted text, checked by :func:`checked_time`."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UnacceptableTime("not an ISO 8601 time") from None
    return checked_time(moment)


# The type of every time field of a model that reads untrusted input.
UntrustedTime = Annotated[AwareDatetime, AfterValidator(checked_time)]
