"""Sending to a real receiver on loopback: signatures, retries, the circuit breaker, dead letters, replay."""

import json
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from apps.outbound.models import Delivery, DeliveryAttempt, Endpoint
from apps.outbound.services import (
    _claim,
    backoff,
    deliveries_replay,
    deliveries_sweep,
    delivery_send,
    endpoint_drain,
    endpoint_of,
)
from apps.partners.models import Partner
from apps.timeline.services import apply_events
from tests.factories import (
    ChannelFactory,
    DeliveryFactory,
    EdiIdentifierFactory,
    OrderFactory,
    PartnerFactory,
    SubscriptionFactory,
)
from tests.receiver import free_port
from tests.stories import carrier, event, events, manifested, order_created, ref

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick_policy(settings):
    settings.OUTBOUND_RETRY_BASE_SECONDS = 10
    settings.OUTBOUND_RETRY_MAX_SECONDS = 600
    settings.OUTBOUND_BREAKER_THRESHOLD = 3
    settings.OUTBOUND_BREAKER_COOLDOWN_SECONDS = 60


@pytest.fixture
def publish(django_capture_on_commit_callbacks):
    """Apply events and run what their commit starts (the first send of each delivery)."""

    def run(*items) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            apply_events(events(*items))

    return run


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    """Run the periodic sweep at a later time, sending what is due then."""

    def run(after: float) -> None:
        later = timezone.now() + timedelta(seconds=after)
        with time_machine.travel(later), django_capture_on_commit_callbacks(execute=True):
            deliveries_sweep()

    return run


def order_story(order: str = "SO-1") -> list[dict]:
    return [order_created(order), manifested(f"SH-{order}", f"1Z{order}", order)]


def delivery() -> Delivery:
    return Delivery.objects.get()


def test_a_delivery_arrives_signed_and_verifiable_with_the_subscription_secret(receiver, publish):
    subscription = SubscriptionFactory(target_url=receiver.url, event_kinds=["shipment.manifested"])

    publish(*order_story())

    [request] = receiver.requests
    assert request.signature_valid(subscription.secret)
    assert not request.signature_valid("another-secret")
    assert request.headers["Idempotency-Key"] == str(delivery().idempotency_key)
    assert request.headers["X-Event-Kind"] == "shipment.manifested"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert (body["kind"], body["event_id"], body["orders"][0]["number"]) == (
        "shipment.manifested",
        "SH-SO-1-manifested",
        "SO-1",
    )
    sent = delivery()
    assert (sent.status, sent.attempts, sent.last_status_code) == (Delivery.Status.DELIVERED, 1, 200)
    [attempt] = DeliveryAttempt.objects.all()
    assert attempt.request_headers["webhook-signature"] == request.headers["webhook-signature"]
    assert json.loads(attempt.request_body) == body


def test_each_attempt_is_signed_with_the_time_it_is_sent_and_says_which_attempt_it_is(receiver, publish, sweep):
    """Receivers refuse old timestamps (README): a retry sent later carries its own, freshly signed."""
    subscription = SubscriptionFactory(target_url=receiver.url)
    receiver.answer_next(500)
    sent = time.time()

    publish(*order_story())
    sweep(after=400)

    first, second = receiver.requests
    assert abs(int(first.headers["webhook-timestamp"]) - sent) <= 2
    assert abs(int(second.headers["webhook-timestamp"]) - (sent + 400)) <= 3
    with time_machine.travel(sent + 400):  # as the receiver checks it on arrival
        assert second.signature_valid(subscription.secret)
    headers = {name.lower(): value for name, value in second.headers.items()}
    assert headers["user-agent"] == "ControlTower-Outbound/1"
    assert (headers["x-delivery-id"], headers["x-delivery-attempt"]) == (str(delivery().pk), "2")


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (408, "HTTP 408"),
        (425, "HTTP 425"),
        (429, "HTTP 429"),
        (("slow", 2.5), "timed out after 1 s"),
    ],
)
def test_a_failing_receiver_gets_the_same_delivery_again_later(receiver, publish, sweep, failure, error):
    subscription = SubscriptionFactory(target_url=receiver.url, timeout_seconds=1)
    receiver.answer_next(failure)

    publish(*order_story())

    waiting = delivery()
    assert waiting.status == Delivery.Status.PENDING
    assert waiting.last_error.startswith(error)
    assert timezone.now() + timedelta(seconds=4) < waiting.next_attempt_at <= timezone.now() + timedelta(seconds=10)

    sweep(after=3)  # not due yet
    assert len(receiver.requests) == 1

    sweep(after=11)
    done = delivery()
    assert (done.status, done.attempts) == (Delivery.Status.DELIVERED, 2)
    first, second = receiver.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert second.signature_valid(subscription.secret)
    assert list(receiver.accepted) == [str(done.idempotency_key)]


def test_a_refused_connection_is_retried(publish, sweep, receiver):
    port = free_port()
    SubscriptionFactory(target_url=f"http://127.0.0.1:{port}/hook")

    publish(*order_story())

    waiting = delivery()
    assert waiting.status == Delivery.Status.PENDING
    assert waiting.last_error.startswith("could not connect")
    assert waiting.last_status_code is None


def test_retries_back_off_exponentially_with_jitter(settings):
    settings.OUTBOUND_RETRY_BASE_SECONDS = 30
    settings.OUTBOUND_RETRY_MAX_SECONDS = 3600
    waits = {attempt: [backoff(attempt).total_seconds() for _ in range(50)] for attempt in (1, 2, 3, 10)}

    assert all(15 <= wait <= 30 for wait in waits[1])
    assert all(30 <= wait <= 60 for wait in waits[2])
    assert all(60 <= wait <= 120 for wait in waits[3])
    assert all(1800 <= wait <= 3600 for wait in waits[10])
    assert len(set(waits[3])) > 10, "jittered"
    assert backoff(1, retry_after=300).total_seconds() == 300


def test_after_the_last_attempt_the_delivery_is_a_dead_letter_and_replay_delivers_it(
    receiver, publish, sweep, settings
):
    settings.OUTBOUND_BREAKER_THRESHOLD = 10
    receiver.default = 500
    SubscriptionFactory(target_url=receiver.url, max_attempts=3)

    publish(*order_story())
    sweep(after=11)
    sweep(after=35)

    dead = delivery()
    assert (dead.status, dead.attempts) == (Delivery.Status.DEAD, 3)
    assert dead.last_error == "gave up after 3 attempts: HTTP 500"
    sweep(after=3600)
    assert len(receiver.requests) == 3, "a dead letter is not sent again by itself"

    receiver.default = 200
    assert deliveries_replay(deliveries=[dead.pk]) == 1
    sweep(after=0)

    replayed = delivery()
    assert (replayed.status, replayed.attempts) == (Delivery.Status.DELIVERED, 1)
    assert list(DeliveryAttempt.objects.values_list("outcome", flat=True)) == ["retry", "retry", "dead", "delivered"]
    assert len(set(receiver.keys())) == 1


def test_a_receiver_refusing_the_content_is_not_hammered(receiver, publish):
    receiver.answer_next(400)
    SubscriptionFactory(target_url=receiver.url)

    publish(*order_story())

    dead = delivery()
    assert dead.status == Delivery.Status.DEAD
    assert dead.last_error == "the receiver refused it: HTTP 400"
    assert Endpoint.objects.get().state == Endpoint.State.CLOSED


def test_the_breaker_opens_after_consecutive_failures_probes_and_closes(receiver, publish, sweep):
    receiver.default = 500
    SubscriptionFactory(target_url=receiver.url, event_kinds=["order.created"])

    publish(order_created("SO-1"), order_created("SO-2"), order_created("SO-3"))
    endpoint = Endpoint.objects.get()
    assert (endpoint.state, endpoint.failures, endpoint.trips) == (Endpoint.State.OPEN, 3, 1)

    # While it is open, nothing goes to the endpoint: not the retries, not new events; and waiting
    # spends none of their attempts.
    publish(order_created("SO-4"))
    sweep(after=30)
    assert len(receiver.requests) == 3
    assert Delivery.objects.filter(status=Delivery.Status.PENDING).count() == 4
    assert sorted(Delivery.objects.values_list("attempts", flat=True)) == [0, 1, 1, 1]
    assert DeliveryAttempt.objects.count() == 3

    # After the cooldown one probe goes; it fails, so the breaker opens again, for longer.
    sweep(after=61)
    endpoint.refresh_from_db()
    assert len(receiver.requests) == 4
    assert (endpoint.state, endpoint.trips) == (Endpoint.State.OPEN, 2)
    assert endpoint.retry_at > timezone.now() + timedelta(seconds=100)

    # The receiver recovers: the next probe succeeds, the breaker closes, everything waiting is sent.
    receiver.default = 200
    sweep(after=61 + 121)
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.failures) == (Endpoint.State.CLOSED, 0)
    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 4
    assert len(receiver.accepted) == 4


def test_a_target_no_longer_allowed_is_a_dead_letter_and_nothing_is_sent(receiver, publish, settings):
    SubscriptionFactory(target_url=receiver.url)
    settings.OUTBOUND_ALLOWED_HOSTS = [".example.com"]

    publish(*order_story())

    dead = delivery()
    assert dead.status == Delivery.Status.DEAD
    assert dead.last_error == "'127.0.0.1' is not an allowed target host (OUTBOUND_ALLOWED_HOSTS: .example.com)"
    assert receiver.requests == []
    assert Endpoint.objects.get().failures == 0


def test_a_success_between_failures_starts_the_count_again(receiver, publish):
    subscription = SubscriptionFactory(target_url=receiver.url, event_kinds=["order.created"])
    Endpoint.objects.filter(pk=endpoint_of(subscription).pk).update(max_in_flight=1)  # answers in turn

    receiver.answer_next(500, 500, 200, 500, 500)
    publish(*(order_created(f"SO-{n}") for n in range(1, 6)))

    endpoint = Endpoint.objects.get()
    assert (endpoint.state, endpoint.failures) == (Endpoint.State.CLOSED, 2)
    assert len(receiver.requests) == 5


@pytest.mark.parametrize("ordered", [False, True])
@pytest.mark.parametrize(
    "count",
    [
        1,
        pytest.param(
            150,
            marks=pytest.mark.skipif(
                connection.vendor != "postgresql", reason="SQLite takes a batch's write-back in parts (variable limit)"
            ),
        ),
    ],
)
def test_draining_an_endpoint_costs_the_same_queries_for_one_delivery_or_a_batch(
    receiver, django_assert_num_queries, count, ordered
):
    subscription = SubscriptionFactory(target_url=receiver.url, ordered=ordered)
    endpoint = endpoint_of(subscription)
    for order in OrderFactory.create_batch(count) if ordered else [None] * count:
        DeliveryFactory(subscription=subscription, order=order)

    # The longest timeout; a batch: breaker, claim (read, subscriptions, update, events), record
    # (the deliveries; on PostgreSQL the attempts go by COPY, which this count does not see) and,
    # when ordered, the order check and the release of what waited; then the claim and check that
    # find nothing more (transactions and savepoints are the rest).
    with django_assert_num_queries((18 if ordered else 16) + (connection.vendor != "postgresql")):
        assert endpoint_drain(endpoint_id=endpoint.pk) == count

    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == count
    assert len(receiver.accepted) == count


def test_deliveries_of_one_order_keep_their_order_when_the_receiver_asks(receiver, publish, sweep):
    SubscriptionFactory(target_url=receiver.url, event_kinds=["*"], ordered=True)
    receiver.answer_next(500)

    publish(order_created("SO-1"), event("SO-1-released", "order.released", 1, ref("order", "SO-1")))

    created, released = Delivery.objects.order_by("pk")
    assert created.status == released.status == Delivery.Status.PENDING
    assert released.held_by == created
    assert released.last_error == f"waiting for delivery #{created.pk} of the same order"
    assert [r.headers["X-Event-Kind"] for r in receiver.requests] == ["order.created"]

    sweep(after=11)

    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.DELIVERED}
    assert not Delivery.objects.filter(held_by__isnull=False).exists()
    kinds = [r.headers["X-Event-Kind"] for r in receiver.accepted.values()]
    assert kinds == ["order.created", "order.released"]


def test_without_ordering_a_later_event_does_not_wait(receiver, publish):
    SubscriptionFactory(target_url=receiver.url, event_kinds=["*"])
    receiver.answer_next(500)

    publish(order_created("SO-1"), event("SO-1-released", "order.released", 1, ref("order", "SO-1")))

    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["delivered", "pending"]


def test_a_delivery_whose_sender_died_is_taken_back_and_sent(receiver, settings):
    settings.OUTBOUND_CLAIM_GRACE_SECONDS = 5
    subscription = SubscriptionFactory(target_url=receiver.url, timeout_seconds=10)
    apply_events(events(*order_story()))  # not committed: nothing sent yet
    stuck = delivery()
    Delivery.objects.filter(pk=stuck.pk).update(
        status=Delivery.Status.SENDING, claimed_until=timezone.now() + timedelta(seconds=15)
    )

    assert deliveries_sweep().recovered == 0
    assert delivery_send(stuck.pk) is None, "another sender holds it"

    later = timezone.now() + timedelta(seconds=16)
    assert deliveries_sweep(now=later).recovered == 1
    outcome = delivery_send(stuck.pk, now=later)

    assert outcome.result == "delivered"
    assert receiver.requests[0].signature_valid(subscription.secret)


def test_documents_go_to_the_channels_outbox_folder_whole(publish, settings, tmp_path):
    settings.OUTBOX_DIR = tmp_path
    partner = PartnerFactory(code="ACME", kind=Partner.Kind.ERP)
    channel = ChannelFactory(partner=partner, code="sftp", format="json", direction="outbound")
    SubscriptionFactory(partner=partner, channel=channel, target_url="", event_kinds=["shipment.manifested"])

    publish(*order_story())

    [written] = (tmp_path / "ACME" / "sftp").iterdir()
    assert written.name == f"shipment-manifested-{delivery().idempotency_key.hex}.json"
    assert json.loads(written.read_text())["event_id"] == "SH-SO-1-manifested"
    assert delivery().status == Delivery.Status.DELIVERED


def test_an_unwritable_outbox_folder_is_retried(publish, settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings.OUTBOX_DIR = blocker
    partner = PartnerFactory(kind=Partner.Kind.ERP)
    channel = ChannelFactory(partner=partner, format="json", direction="outbound")
    SubscriptionFactory(partner=partner, channel=channel, target_url="")

    publish(*order_story())

    waiting = delivery()
    assert waiting.status == Delivery.Status.PENDING
    assert waiting.last_error.startswith("could not write to")


def test_retry_after_from_the_receiver_is_respected(receiver, publish):
    SubscriptionFactory(target_url=receiver.url)
    receiver.answer_next((429, {"Retry-After": "120"}))

    publish(*order_story())

    waiting = delivery().next_attempt_at - timezone.now()
    assert timedelta(seconds=115) < waiting <= timedelta(seconds=120)


def test_an_inactive_subscription_keeps_its_deliveries_until_it_is_active_again(receiver, publish, sweep):
    subscription = SubscriptionFactory(target_url=receiver.url)
    receiver.answer_next(500)
    publish(*order_story())
    subscription.active = False
    subscription.save()

    sweep(after=11)
    assert len(receiver.requests) == 1

    subscription.active = True
    subscription.save()
    sweep(after=11)
    assert delivery().status == Delivery.Status.DELIVERED


def test_a_shipment_event_reaches_the_order_it_serves(receiver, publish):
    customer = PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER)
    SubscriptionFactory(target_url=receiver.url, event_kinds=["shipment.delivered"], customers=[customer])

    publish(order_created("SO-1", order={"customer": "ACME"}), manifested("SH-1", "1Z1", "SO-1"))
    publish(carrier("1Z1", "shipment.delivered", 30))

    [request] = receiver.requests
    assert json.loads(request.body)["orders"] == [{"number": "SO-1", "region": None}]


def test_an_invoice_goes_to_an_x12_customer_as_an_810_it_can_read(receiver, publish):
    customer = PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER, time_zone="Europe/Paris")
    EdiIdentifierFactory(partner=customer, qualifier="ZZ", value="ACMEEDI")
    SubscriptionFactory(partner=customer, target_url=receiver.url, format="x12", event_kinds=["invoice.generated"])
    invoice = event("inv-1", "invoice.generated", 40, ref("invoice", "INV-SO-1"), ref("order", "SO-1"), amount="50.00")

    publish(order_created("SO-1", order={"customer": "ACME"}), {**invoice, "currency": "EUR"})

    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/edi-x12"
    text = request.body.decode()
    segments = text.splitlines()
    assert segments[0].startswith("ISA*")
    assert {"ST*810*0001~", "BIG*20261104*INV-SO-1~", "REF*VN*SO-1~", "TDS*5000~"} <= set(segments)
    assert delivery().status == Delivery.Status.DELIVERED


def test_an_x12_document_that_cannot_be_written_is_a_dead_letter_with_the_reason(receiver, publish):
    customer = PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER)
    identifier = EdiIdentifierFactory(partner=customer)
    SubscriptionFactory(partner=customer, target_url=receiver.url, format="x12", event_kinds=["invoice.generated"])
    identifier.delete()  # removed after the subscription was set up

    publish(
        order_created("SO-1", order={"customer": "ACME"}),
        event("inv-1", "invoice.generated", 40, ref("invoice", "INV-SO-1"), ref("order", "SO-1")),
    )

    dead = delivery()
    assert dead.status == Delivery.Status.DEAD
    assert dead.last_error.startswith("the document cannot be written:")
    assert not receiver.requests
    assert Endpoint.objects.get().failures == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_senders_claiming_one_delivery_at_the_same_moment_never_both_win():
    """The second claim skips the row the first one holds, and once that commits, sees it taken."""
    delivery = DeliveryFactory(next_attempt_at=timezone.now() - timedelta(seconds=1))
    now = timezone.now()
    first_holds, release, committed, second = threading.Event(), threading.Event(), threading.Event(), []

    def first() -> None:
        with transaction.atomic():
            assert _claim(Delivery.objects.filter(pk=delivery.pk), now)
            first_holds.set()
            release.wait(10)
        committed.set()
        connection.close()

    def then_second() -> None:
        first_holds.wait(10)
        second.append(_claim(Delivery.objects.filter(pk=delivery.pk), now))
        release.set()
        committed.wait(10)
        second.append(_claim(Delivery.objects.filter(pk=delivery.pk), now))
        connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=then_second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert second == [[], []]
    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.SENDING
