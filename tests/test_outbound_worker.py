"""Outbound deliveries through real Celery workers on Redis and PostgreSQL, to a receiver on loopback.

A worker is killed with SIGKILL while it waits for the receiver's answer; the delivery is taken
back once its claim expires and sent by another worker. The receiver, deduping on
Idempotency-Key, has it exactly once.
"""

import signal
import time

import pytest
from django.db import transaction
from django.utils import timezone

from apps.outbound.models import Delivery
from apps.outbound.services import deliveries_sweep
from apps.timeline.services import enqueue_events
from tests.factories import SubscriptionFactory
from tests.stories import events, manifested, order_created
from tests.support import needs_services, start_worker, wait_for

pytestmark = [pytest.mark.worker, needs_services]


def _stop(process) -> None:
    process.terminate()
    process.wait(timeout=20)


def test_a_worker_killed_mid_delivery_loses_nothing_and_the_receiver_has_it_once(
    transactional_db, queued, receiver, monkeypatch
):
    monkeypatch.setenv("OUTBOUND_CLAIM_GRACE_SECONDS", "1")
    monkeypatch.setenv("NETWORK_TRUSTED_TARGETS", "http://127.0.0.1")  # the workers' settings, as the receiver's
    subscription = SubscriptionFactory(target_url=receiver.url, event_kinds=["shipment.manifested"], timeout_seconds=4)
    receiver.answer_next(("slow", 3))
    first = start_worker(capture=True)
    try:
        with transaction.atomic():
            enqueue_events(events(order_created("SO-K1"), manifested("SH-K1", "1ZK1", "SO-K1")))
        wait_for(lambda: len(receiver.requests) == 1, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()

    stuck = Delivery.objects.get(subscription=subscription)
    assert stuck.status == Delivery.Status.SENDING
    assert receiver.requests[0].signature_valid(subscription.secret)

    second = start_worker(capture=True)
    try:
        while timezone.now() <= stuck.claimed_until:
            time.sleep(0.2)
        assert deliveries_sweep().recovered == 1
        wait_for(lambda: Delivery.objects.filter(pk=stuck.pk, status=Delivery.Status.DELIVERED).exists(), second)
    finally:
        _stop(second)

    assert len(receiver.requests) == 2
    assert len(set(receiver.keys())) == 1
    assert list(receiver.accepted) == [str(stuck.idempotency_key)]
    assert all(request.signature_valid(subscription.secret) for request in receiver.requests)
