"""The one check of times from untrusted input (pure): aware, UTC form within the bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.untrusted_time import (
    EARLIEST,
    EPOCH,
    LATEST,
    LATEST_EPOCH_MS,
    UnacceptableTime,
    checked_time,
    parse_time,
)

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(moment=st.datetimes(), zone=offsets)
def test_accepted_exactly_when_the_utc_form_is_within_the_bounds(
    moment: datetime, zone: timezone
) -> None:
    aware = moment.replace(tzinfo=zone)
    # The UTC form as an exact offset from the epoch (timedelta arithmetic cannot overflow).
    epoch = datetime(1970, 1, 1)
    since_epoch = (moment - epoch) - zone.utcoffset(None)
    within = EARLIEST - EPOCH <= since_epoch <= LATEST - EPOCH
    if within:
        checked = checked_time(aware)
        assert checked == aware and checked.tzinfo is UTC
        # A day either way, and any session time zone, stays representable.
        assert checked + timedelta(days=1) > checked
        assert checked.astimezone(timezone(timedelta(hours=15, minutes=59))).year <= 9999
    else:
        with pytest.raises(UnacceptableTime):
            checked_time(aware)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+14:00",  # UTC form in year 0: what poisoned the pool
        "9999-12-31T23:59:59-14:00",  # UTC form in year 10000
        "1969-12-31T23:59:59Z",
        "9999-12-30T00:00:00.000001+00:00",
        "2024-01-01T00:00:00",  # no offset
        "yesterday",
    ],
)
def test_refused_without_echoing_the_input(text: str) -> None:
    with pytest.raises(UnacceptableTime) as caught:
        parse_time(text)
    assert text not in str(caught.value)


def test_bounds_and_the_webhook_millisecond_bound_agree() -> None:
    assert parse_time("1970-01-01T00:00:00Z") == EARLIEST
    assert parse_time("9999-12-30T00:00:00Z") == LATEST
    assert datetime.fromtimestamp(LATEST_EPOCH_MS / 1000, UTC) == LATEST
