from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from apps.predictions.clock import add_hours, hours_between

FRIDAY_NOON = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
MONDAY_NOON = FRIDAY_NOON + timedelta(days=3)


def test_the_working_clock_stops_for_the_weekend():
    assert hours_between(FRIDAY_NOON, MONDAY_NOON, working=True) == 24
    assert hours_between(FRIDAY_NOON, MONDAY_NOON, working=False) == 72
    assert add_hours(FRIDAY_NOON, 24, working=True) == MONDAY_NOON
    assert add_hours(FRIDAY_NOON, 24, working=False) == FRIDAY_NOON + timedelta(days=1)


def test_a_weekend_moment_counts_from_monday_morning():
    saturday = FRIDAY_NOON + timedelta(days=1)
    assert add_hours(saturday, 2, working=True) == datetime(2026, 11, 9, 2, 0, tzinfo=UTC)
    assert hours_between(saturday, MONDAY_NOON, working=True) == 12


@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    hours=st.floats(min_value=0, max_value=2000),
)
def test_adding_working_hours_is_undone_by_counting_them(start, hours):
    end = add_hours(start, hours, working=True)
    assert end.weekday() < 5 or hours == 0
    assert abs(hours_between(start, end, working=True) - hours) < 1e-6
