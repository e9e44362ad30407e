"""A real Celery worker process, a real Redis broker and a real PostgreSQL database."""

import pytest
from django.db import transaction

from apps.timeline.models import Order, Shipment
from apps.timeline.services import enqueue_events
from tests.stories import events, manifested, order_created
from tests.support import needs_services, wait_for

pytestmark = [pytest.mark.worker, needs_services]


def test_a_worker_applies_events_enqueued_on_commit(worker):
    with transaction.atomic():
        enqueue_events(events(order_created("SO-W1"), manifested("SH-W1", "1ZW1", "SO-W1")))
        # Nothing is sent before the transaction commits.
        assert not Order.objects.filter(number="SO-W1").exists()

    wait_for(lambda: Shipment.objects.filter(number="SH-W1", orders__number="SO-W1").exists(), worker)
    assert Order.objects.get(number="SO-W1").stage == "shipped"
