"""Writing many new rows: existing ones are skipped, values arrive as they were given."""

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import NamedTuple

import pytest
from django.db import connection

from apps.timeline.bulk import insert_new, row_sources
from apps.timeline.models import Milestone, Order

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 20, 13, 3, tzinfo=UTC)


def _milestone(event_id: str, **fields) -> Milestone:
    return Milestone(
        event_id=event_id,
        kind="order.picked",
        occurred_at=AT,
        references=[{"kind": "order", "value": "SO-1"}],
        payload={"event_id": event_id, "note": "é \\ \t tab"},
        **fields,
    )


def test_rows_are_written_with_their_values_and_existing_ones_skipped():
    order = Order.objects.create(number="SO-1")
    insert_new(Milestone, [_milestone("e1", order=order, amount=Decimal("12.50"), location=None)])
    insert_new(Milestone, [_milestone("e1", order=order), _milestone("e2", order=order)])

    assert list(Milestone.objects.order_by("event_id").values_list("event_id", flat=True)) == ["e1", "e2"]
    first = Milestone.objects.get(event_id="e1")
    assert (first.order_id, first.occurred_at, first.amount, first.location) == (order.id, AT, Decimal("12.50"), None)
    assert first.payload == {"event_id": "e1", "note": "é \\ \t tab"}
    assert first.references == [{"kind": "order", "value": "SO-1"}]
    assert first.recorded_at is not None


def test_nothing_to_write_is_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        insert_new(Milestone, [])


class _Row(NamedTuple):
    event_id: str
    occurred_at: datetime
    amount: Decimal
    payload: dict


def test_rows_sent_as_one_document_read_back_exactly():
    at = datetime(2026, 11, 20, 13, 3, 7, 123456, tzinfo=timezone(timedelta(hours=-5)))
    rows = [_Row("e1", at, Decimal("12.50"), {"lines": [{"sku": "Ä-1", "quantity": Decimal("0.125")}], 7: None})]

    with connection.cursor() as cursor:
        [(source, params)] = row_sources(Milestone, ["event_id", "occurred_at", "amount", "payload"], rows)
        cursor.execute(f"SELECT * FROM ({source}) AS s", params)  # noqa: S608
        event_id, occurred_at, amount, payload = cursor.fetchone()

    assert (event_id, Decimal(str(amount))) == ("e1", Decimal("12.50"))
    if connection.vendor == "postgresql":
        assert occurred_at == at
        assert json.loads(payload) == {"lines": [{"sku": "Ä-1", "quantity": "0.125"}], "7": None}
