"""The queue of KPI refresh requests: a drain takes the oldest first, and taking them costs what
they are, whatever statistics the database last took of the queue."""

import json

import pytest
from django.db import connection

from apps.dashboards.models import PendingRefresh
from apps.dashboards.services import _take_pending, take_pending_statement

pytestmark = pytest.mark.django_db


def _queue(count: int) -> list[tuple[str, int]]:
    PendingRefresh.objects.bulk_create(PendingRefresh(subject_type="order", subject_id=n) for n in range(count))
    return list(PendingRefresh.objects.order_by("id").values_list("subject_type", "subject_id"))


def test_a_drain_takes_the_oldest_requests_and_leaves_the_rest() -> None:
    queued = _queue(5)

    assert _take_pending(2) == queued[:2]
    assert list(PendingRefresh.objects.order_by("id").values_list("subject_type", "subject_id")) == queued[2:]
    assert sorted(_take_pending(10)) == sorted(queued[2:])
    assert _take_pending(10) == []


def _rows_visited(plan: dict) -> int:
    """Rows every node of an executed plan produced, over all its loops."""
    own = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
    return own + sum(_rows_visited(child) for child in plan.get("Plans", []))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_taking_a_chunk_reads_each_request_once_even_when_statistics_saw_an_empty_queue() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(PendingRefresh._meta.db_table)}")
    _queue(3000)

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {take_pending_statement()}", [2000])
        output = cursor.fetchone()[0]
    (plan,) = json.loads(output) if isinstance(output, str) else output

    assert PendingRefresh.objects.count() == 1000
    assert _rows_visited(plan["Plan"]) < 5 * 3000
