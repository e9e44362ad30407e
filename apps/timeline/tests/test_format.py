"""The page filters that write spans of time write them as Django's ``timesince`` does."""

from datetime import UTC, datetime, timedelta

from django.urls import clear_script_prefix, reverse, set_script_prefix
from django.utils.timesince import timesince, timeuntil
from hypothesis import given
from hypothesis import strategies as st

from apps.timeline.templatetags.timeline_format import id_url, since, until

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
spans = st.timedeltas(min_value=-timedelta(days=120), max_value=timedelta(days=800))
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@given(now=moments, span=spans)
def test_since_writes_what_timesince_writes(now, span):
    assert since(now - span, now) == timesince(now - span, now)


@given(now=moments, span=spans)
def test_until_writes_what_timeuntil_writes(now, span):
    assert until(now + span, now) == timeuntil(now + span, now)


def test_spans_read_as_people_write_them():
    assert since(NOW - timedelta(days=10, hours=3), NOW) == "1\xa0week, 3\xa0days"
    assert since(NOW - timedelta(hours=5, minutes=1), NOW) == "5\xa0hours, 1\xa0minute"
    assert since(NOW - timedelta(days=1, minutes=4), NOW) == "1\xa0day"  # no hour between them
    assert since(NOW - timedelta(seconds=30), NOW) == "0\xa0minutes"
    assert until(NOW - timedelta(hours=1), NOW) == "0\xa0minutes"  # already past
    assert since(None, NOW) == ""


@given(pk=st.integers(min_value=0, max_value=2**31 - 1))
def test_an_id_url_is_the_reversed_url(pk):
    assert id_url(pk, "case-detail") == reverse("case-detail", args=[pk])
    assert id_url(pk, "order-detail") == reverse("order-detail", args=[pk])


def test_an_id_url_follows_the_script_prefix():
    set_script_prefix("/tower/")
    try:
        assert id_url(7, "case-detail") == "/tower/cases/7/"
    finally:
        clear_script_prefix()
    assert id_url(7, "case-detail") == "/cases/7/"
