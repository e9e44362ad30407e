import pytest
from django.core.management import call_command

from apps.timeline.models import Order, OrderStage, ParkedEvent, Reference
from apps.timeline.services import apply_events
from tests.stories import event, events, ref

pytestmark = pytest.mark.django_db


def test_sweep_runs_the_periodic_jobs_and_applies_parked_events_that_now_match(capsys):
    apply_events(events(event("rel", "order.released", 1, ref("order", "SO-7"))))
    order = Order.objects.create(number="SO-7")
    Reference.objects.create(kind="order", value="SO-7", order=order)

    call_command("sweep")

    assert "retry-parked-events: {'applied': 1, 'parked': 0}" in capsys.readouterr().out
    assert not ParkedEvent.objects.exists()
    order.refresh_from_db()
    assert order.stage == OrderStage.RELEASED
