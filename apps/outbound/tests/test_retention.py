"""The delivery log's retention: delivered deliveries are forgotten after OUTBOUND_RETENTION_DAYS,
dead letters and deliveries still on their way are kept whatever their age."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.outbound.models import Delivery, DeliveryAttempt, OutboundEvent
from apps.outbound.services import deliveries_prune
from tests.factories import DeliveryFactory, OutboundEventFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


@pytest.fixture(autouse=True)
def retention(settings) -> None:
    settings.OUTBOUND_RETENTION_DAYS = 30


def aged(days: float, status: str = Delivery.Status.DELIVERED, **fields) -> Delivery:
    """A delivery made ``days`` ago (delivered or dead then), with one attempt logged."""
    at = NOW - timedelta(days=days)
    if status == Delivery.Status.DELIVERED:
        fields["delivered_at"] = at
    if status == Delivery.Status.DEAD:
        fields["dead_at"] = at
    delivery = DeliveryFactory(status=status, **fields)
    OutboundEvent.objects.filter(pk=delivery.event_id).update(published_at=at)
    outcome = {Delivery.Status.DELIVERED: "delivered", Delivery.Status.DEAD: "dead"}.get(status, "retry")
    DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=at, outcome=outcome, request_body="{}")
    return delivery


def test_deliveries_delivered_before_the_retention_period_go_with_their_attempts_and_events():
    old = aged(31)
    recent = aged(29)

    pruned = deliveries_prune(now=NOW)

    assert (pruned.deliveries, pruned.events) == (1, 1)
    assert list(Delivery.objects.all()) == [recent]
    assert not DeliveryAttempt.objects.filter(delivery_id=old.pk).exists()
    assert DeliveryAttempt.objects.filter(delivery=recent).count() == 1
    assert list(OutboundEvent.objects.all()) == [recent.event]


def test_dead_letters_and_unsent_deliveries_are_kept_however_old():
    dead = aged(400, Delivery.Status.DEAD)
    waiting = aged(400, Delivery.Status.PENDING)

    assert deliveries_prune(now=NOW).deliveries == 0

    assert set(Delivery.objects.all()) == {dead, waiting}
    assert DeliveryAttempt.objects.count() == 2


def test_an_event_stays_while_any_subscriber_still_has_its_delivery():
    event = OutboundEventFactory()
    aged(60, event=event)
    dead = aged(60, Delivery.Status.DEAD, event=event, subscription=SubscriptionFactory())

    assert deliveries_prune(now=NOW).events == 0

    assert list(OutboundEvent.objects.all()) == [event]
    assert list(Delivery.objects.all()) == [dead]


def test_a_delivery_held_by_a_pruned_one_is_released_not_deleted():
    earlier = aged(45)
    later = aged(45, Delivery.Status.PENDING, held_by=earlier)

    deliveries_prune(now=NOW)

    later.refresh_from_db()
    assert later.held_by is None


def test_a_large_backlog_is_deleted_in_batches():
    for _ in range(7):
        aged(90)
    aged(1)

    pruned = deliveries_prune(now=NOW, batch=3)

    assert (pruned.deliveries, pruned.events) == (7, 7)
    assert Delivery.objects.count() == OutboundEvent.objects.count() == 1


def test_the_sweep_command_runs_the_retention_rule():
    aged(31)

    out = StringIO()

    call_command("sweep", stdout=out)

    assert not Delivery.objects.exists()
    assert "outbound-prune: {'deliveries': 1, 'events': 1}" in out.getvalue()
