"""Sending at volume: each endpoint drained on its own with a bounded number of requests in flight,
so a slow or dead subscriber holds up nobody else; ordered subscriptions keep each order's events
in sequence while other orders go on."""

import ipaddress
import json
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from apps.outbound.models import Delivery, Endpoint
from apps.outbound.services import endpoint_drain, endpoint_of
from tests.factories import DeliveryFactory, OrderFactory, OutboundEventFactory, SubscriptionFactory
from tests.receiver import Receiver, free_port, start_receiver


@pytest.fixture
def slow_receiver(trust_loopback) -> Iterator[Receiver]:
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()


def endpoint_with(subscription, *, max_in_flight: int) -> Endpoint:
    endpoint = endpoint_of(subscription)
    Endpoint.objects.filter(pk=endpoint.pk).update(max_in_flight=max_in_flight)
    return endpoint


def drain_in_thread(endpoint: Endpoint, finished: dict, name: str) -> threading.Thread:
    def run() -> None:
        try:
            endpoint_drain(endpoint_id=endpoint.pk)
        finally:
            finished[name] = True
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.skipif(connection.vendor != "postgresql", reason="three senders writing at once: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_a_slow_and_a_dead_subscriber_do_not_hold_up_a_healthy_one(receiver, slow_receiver, settings):
    settings.OUTBOUND_BREAKER_THRESHOLD = 3
    slow_receiver.default = ("slow", 1.5)
    healthy = SubscriptionFactory(target_url=receiver.url)
    slow = SubscriptionFactory(target_url=slow_receiver.url, timeout_seconds=2)
    dead = SubscriptionFactory(target_url=f"http://127.0.0.1:{free_port()}/hooks")
    endpoints = {
        "healthy": endpoint_with(healthy, max_in_flight=4),
        "slow": endpoint_with(slow, max_in_flight=4),
        "dead": endpoint_with(dead, max_in_flight=4),
    }
    for subscription, count in ((healthy, 40), (slow, 8), (dead, 20)):
        DeliveryFactory.create_batch(count, subscription=subscription)

    finished: dict[str, bool] = {}
    slow_answered_when_healthy_done: list[int] = []
    threads = [drain_in_thread(endpoints[name], finished, name) for name in ("slow", "dead", "healthy")]
    threads[2].join(30)
    slow_answered_when_healthy_done.append(len(slow_receiver.accepted))
    for thread in threads:
        thread.join(30)

    assert len(receiver.accepted) == 40
    assert slow_answered_when_healthy_done[0] < 8, "the healthy endpoint was done before the slow one"
    assert len(slow_receiver.accepted) == 8
    assert slow_receiver.most_at_once == 4, "the slow endpoint had its 4 requests in flight, never more"
    assert Endpoint.objects.get(pk=endpoints["dead"].pk).state == Endpoint.State.OPEN
    assert Delivery.objects.filter(subscription=healthy, status=Delivery.Status.DELIVERED).count() == 40
    assert Delivery.objects.filter(subscription=dead, status=Delivery.Status.PENDING).count() == 20


@pytest.mark.django_db
def test_an_endpoint_gets_several_requests_at_once_never_more_than_its_limit(receiver):
    receiver.default = ("slow", 0.2)
    subscription = SubscriptionFactory(target_url=receiver.url)
    endpoint = endpoint_with(subscription, max_in_flight=3)
    DeliveryFactory.create_batch(9, subscription=subscription)

    assert endpoint_drain(endpoint_id=endpoint.pk) == 9

    assert receiver.most_at_once == 3
    assert len(receiver.accepted) == 9


@pytest.mark.django_db
def test_an_ordered_subscription_sends_each_order_in_sequence_and_stops_an_order_at_its_failure(receiver):
    subscription = SubscriptionFactory(target_url=receiver.url, ordered=True, event_kinds=["*"])
    endpoint_with(subscription, max_in_flight=4)
    orders = OrderFactory.create_batch(3)
    deliveries = {
        order.number: [
            DeliveryFactory(subscription=subscription, order=order, event=OutboundEventFactory(payload={"n": n}))
            for n in range(4)
        ]
        for order in orders
    }
    failing = deliveries[orders[1].number][1]

    receiver.default = lambda request: 500 if request.headers["X-Delivery-Id"] == str(failing.pk) else 200

    endpoint_drain(endpoint_id=endpoint_of(subscription).pk)

    sent = [int(request.headers["X-Delivery-Id"]) for request in receiver.requests]
    for order in orders:
        ids = [delivery.pk for delivery in deliveries[order.number]]
        assert [pk for pk in sent if pk in ids] == (ids if order != orders[1] else ids[:2])
    after_failure = Delivery.objects.filter(pk__in=[d.pk for d in deliveries[orders[1].number][2:]])
    assert set(after_failure.values_list("status", "held_by", "attempts")) == {("pending", failing.pk, 0)}
    assert Delivery.objects.get(pk=failing.pk).status == Delivery.Status.PENDING
    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 9
    assert all(json.loads(request.body) for request in receiver.requests)


def delivered(subscription, freshness_ms: list[int]) -> None:
    for value in freshness_ms:
        DeliveryFactory(subscription=subscription, status=Delivery.Status.DELIVERED, freshness_ms=value)


@pytest.mark.django_db
def test_commit_to_delivery_is_measured_when_a_delivery_arrives(receiver):
    subscription = SubscriptionFactory(target_url=receiver.url)
    waiting = DeliveryFactory(subscription=subscription)
    Delivery.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(seconds=3))

    endpoint_drain(endpoint_id=endpoint_of(subscription).pk)

    assert 3000 <= Delivery.objects.get(pk=waiting.pk).freshness_ms < 4000


@pytest.mark.django_db
def test_the_delivery_log_shows_p50_and_p95_of_commit_to_delivery(admin_client):
    subscription = SubscriptionFactory()
    delivered(subscription, [*range(10, 1000, 10), 5000])

    page = admin_client.get(reverse("subscription-detail", args=[subscription.pk])).content.decode()

    assert "p50 500 ms · p95 950 ms" in page
    assert "over the last 100 deliveries" in page


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="one query for every subscription: PostgreSQL")
@pytest.mark.parametrize("others", [0, 40])
def test_metrics_give_each_subscription_its_p50_and_p95_in_one_query_however_many_there_are(
    client, settings, django_assert_num_queries, others
):
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("127.0.0.1/32")]
    erp, portal, quiet = (SubscriptionFactory(name=name) for name in ("ERP", "Portal", "Quiet"))
    delivered(erp, [100, 200, 300, 400])
    delivered(portal, [2000] * 19 + [9000])
    for subscription in SubscriptionFactory.create_batch(others):
        delivered(subscription, [700])

    # The four of every scrape, the active subscriptions, then their freshness at once.
    with django_assert_num_queries(4 + 1 + 1):
        response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")

    samples = {
        (sample.labels["subscription"], sample.labels["quantile"]): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        if family.name == "controltower_outbound_commit_to_delivery_seconds"
        for sample in family.samples
    }
    assert {key: value for key, value in samples.items() if key[0] in ("ERP", "Portal")} == {
        ("ERP", "0.5"): 0.2,
        ("ERP", "0.95"): 0.4,
        ("Portal", "0.5"): 2.0,
        ("Portal", "0.95"): 2.0,
    }
    assert len(samples) == 4 + 2 * others
    assert quiet.name not in {name for name, _ in samples}


@pytest.mark.django_db
def test_a_subscription_taking_batches_gets_its_events_together_signed_and_verifiable(receiver):
    subscription = SubscriptionFactory(target_url=receiver.url, batch_size=2)
    deliveries = [
        DeliveryFactory(subscription=subscription, event=OutboundEventFactory(payload={"event_id": f"e-{n}"}))
        for n in range(5)
    ]
    receiver.answer_next(200, 503)

    endpoint_drain(endpoint_id=endpoint_with(subscription, max_in_flight=1).pk)  # requests in turn

    batches = [Webhook(subscription.secret).verify(request.body, request.headers) for request in receiver.requests]
    assert [[event["event_id"] for event in batch["events"]] for batch in batches] == [
        ["e-0", "e-1"],
        ["e-2", "e-3"],
        ["e-4"],
    ]
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert [statuses[delivery.pk] for delivery in deliveries] == [
        "delivered",
        "delivered",
        "pending",
        "pending",
        "delivered",
    ]
    assert Endpoint.objects.get().failures == 0, "the answer after the failure counts, once per request"
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 3


def test_only_unordered_canonical_json_to_a_url_takes_batches():
    for subscription in (
        SubscriptionFactory.build(batch_size=5, ordered=True),
        SubscriptionFactory.build(batch_size=5, format="x12"),
        SubscriptionFactory.build(batch_size=5, target_url=""),
    ):
        with pytest.raises(ValidationError) as refused:
            subscription.clean()
        assert "batch_size" in refused.value.message_dict
