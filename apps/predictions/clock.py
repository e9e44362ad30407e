"""Two clocks for transit times: the wall clock, and one that stops at weekends.

A carrier that does not deliver at weekends takes as many working hours from Friday to Monday as
from Monday to Tuesday; counted on the wall clock its transit times would swing by two days with
the day of pickup. Weekends are counted in UTC: a few hours off a carrier's local weekend.
"""

from datetime import UTC, datetime, timedelta

WEEK_HOURS = 7 * 24
WORKING_WEEK_HOURS = 5 * 24
# A Monday, 00:00 UTC: working hours are counted from here.
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


def _working_position(moment: datetime) -> float:
    """Working hours from ``_MONDAY`` to ``moment``; a weekend moment counts as Friday's end."""
    hours = (moment - _MONDAY).total_seconds() / 3600
    weeks, into_week = divmod(hours, WEEK_HOURS)
    return weeks * WORKING_WEEK_HOURS + min(into_week, WORKING_WEEK_HOURS)


def hours_between(start: datetime, end: datetime, *, working: bool) -> float:
    if working:
        return _working_position(end) - _working_position(start)
    return (end - start).total_seconds() / 3600


def add_hours(start: datetime, hours: float, *, working: bool) -> datetime:
    """``start`` plus ``hours``; on the working clock the weekends in between are skipped."""
    if not working:
        return start + timedelta(hours=hours)
    weeks, into_week = divmod(_working_position(start) + hours, WORKING_WEEK_HOURS)
    return _MONDAY + timedelta(hours=weeks * WEEK_HOURS + into_week)


def is_weekend(moment: datetime) -> bool:
    return moment.astimezone(UTC).weekday() >= 5
