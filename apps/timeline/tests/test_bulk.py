"""Writing many new rows: existing ones are skipped, values arrive as they were given."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.timeline.bulk import insert_new
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
