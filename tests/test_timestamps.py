"""Timestamps read back from PostgreSQL are the instants written, in UTC, whoever parses them."""

import datetime

import pytest
from django.db import connection

from apps.timeline.models import Order
from controltower.timestamps import UtcTimestamptzLoader
from tests.factories import OrderFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the loader is PostgreSQL's"),
]

UTC = datetime.UTC


def _select(sql: str) -> datetime.datetime:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_connections_read_timestamps_with_the_compiled_loader() -> None:
    connection.ensure_connection()
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(cursor.cursor.adapters.types["timestamptz"].oid, 0)

    assert loader is UtcTimestamptzLoader


def test_an_instant_written_in_another_zone_reads_back_in_utc() -> None:
    value = _select("SELECT '2026-03-29 02:30:00.123456+02'::timestamptz")

    assert value == datetime.datetime(2026, 3, 29, 0, 30, 0, 123456, tzinfo=UTC)
    assert value.tzinfo is UTC


def test_a_session_moved_to_another_zone_still_reads_utc() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'America/St_Johns'")
    try:
        value = _select("SELECT '2026-11-01 23:59:59+00'::timestamptz")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")

    assert value == datetime.datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
    assert value.tzinfo is UTC


def test_model_fields_round_trip_through_the_orm() -> None:
    promised = datetime.datetime(
        1999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
    )
    order = OrderFactory(promised_at=promised, delivered_at=None)

    stored = Order.objects.values_list("promised_at", "delivered_at").get(pk=order.pk)

    assert stored == (promised, None)
    assert stored[0].tzinfo is UTC
    assert (stored[0].day, stored[0].hour) == (1, 4)
