"""Deliveries go only where the network guard allows: internal addresses are refused at connect
time (DNS rebinding included), redirects are not followed, and an endless reply cannot hold a
sender past its deadline or get the delivery sent twice at once."""

import ipaddress
import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.outbound.models import Delivery, DeliveryAttempt, Endpoint
from apps.outbound.services import deliveries_sweep, delivery_send
from apps.partners import network
from apps.partners.models import Partner
from tests.factories import DeliveryFactory, PartnerFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db

PUBLIC = ipaddress.ip_address("93.184.215.14")
SECRET_ANSWER = b'{"AccessKeyId": "ASIA-very-secret"}'


@pytest.fixture
def development(settings):
    """Plain http is allowed in development, so only the addresses can be what is refused."""
    settings.DEBUG = True
    settings.NETWORK_TRUSTED_TARGETS = []


def send_to(url: str) -> Delivery:
    delivery = DeliveryFactory(subscription=SubscriptionFactory(target_url=url))
    delivery_send(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def port_of(receiver) -> int:
    return int(receiver.url.split(":")[2].split("/")[0])


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("localhost", "localhost resolves to 127.0.0.1, a loopback address"),
        ("[::1]", "::1 is a loopback address"),
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("[fe80::1]", "fe80::1 is a link-local address"),
        ("100.64.0.7", "100.64.0.7 is a shared (carrier-grade NAT) address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),  # noqa: S104 - a target that must be refused
    ],
)
def test_an_internal_target_is_a_dead_letter_with_the_reason_and_nothing_is_sent(
    receiver, development, guarded_connections, host, reason
):
    receiver.body = SECRET_ANSWER

    dead = send_to(f"http://{host}:{port_of(receiver)}/hooks/control-tower")

    assert dead.status == Delivery.Status.DEAD
    assert dead.last_error == f"not sent: {reason}; only NETWORK_TRUSTED_TARGETS may allow it"
    assert (receiver.requests, guarded_connections) == ([], [])
    [attempt] = DeliveryAttempt.objects.all()
    assert (attempt.outcome, attempt.status_code, attempt.response_body) == ("dead", None, "")
    assert Endpoint.objects.get().failures == 0, "a refused target is not the receiver failing"


def test_the_delivery_page_shows_why_and_never_what_an_internal_target_would_answer(receiver, development):
    receiver.body = SECRET_ANSWER
    dead = send_to(receiver.url)
    client = Client()
    client.force_login(UserFactory(permissions=["outbound.view_subscription"]))

    page = client.get(reverse("delivery-detail", args=[dead.pk])).content.decode()

    assert "127.0.0.1 is a loopback address" in page
    assert "ASIA-very-secret" not in page


def test_a_name_rebound_to_loopback_after_it_was_saved_is_refused_when_sending(
    receiver, development, monkeypatch, guarded_connections
):
    answers = iter([[PUBLIC], [ipaddress.ip_address("127.0.0.1")]])
    monkeypatch.setattr(network, "resolve", lambda host, port: next(answers))
    subscription = SubscriptionFactory.build(
        partner=PartnerFactory(kind=Partner.Kind.ERP), target_url=f"http://rebound.example:{port_of(receiver)}/hook"
    )
    subscription.full_clean()  # saved while the name pointed at a public address
    subscription.save()

    delivery = DeliveryFactory(subscription=subscription)
    delivery_send(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DEAD
    assert delivery.last_error.startswith("not sent: rebound.example resolves to 127.0.0.1, a loopback address")
    assert (receiver.requests, guarded_connections) == ([], [])


def test_the_address_checked_is_the_address_connected_to(receiver, development, monkeypatch, guarded_connections):
    """A resolver that answers a public address to the check and loopback to a second lookup
    (rebinding) gets one lookup per connection: the connection goes to the address checked."""
    lookups = []

    def rebinding(host: str, port: int) -> list:
        lookups.append(host)
        return [PUBLIC] if len(lookups) == 1 else [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(network, "resolve", rebinding)

    waiting = send_to(f"http://rebound.example:{port_of(receiver)}/hook")

    assert lookups == ["rebound.example"]
    assert guarded_connections == [str(PUBLIC)]
    assert receiver.requests == []
    assert waiting.status == Delivery.Status.PENDING  # the public address did not answer: retried
    assert waiting.last_error.startswith("could not connect")


def test_a_name_with_any_internal_address_is_refused(receiver, development, monkeypatch, guarded_connections):
    monkeypatch.setattr(network, "resolve", lambda host, port: [PUBLIC, ipaddress.ip_address("10.0.0.8")])

    dead = send_to("http://mixed.example/hook")

    assert dead.last_error.startswith("not sent: mixed.example resolves to 10.0.0.8, a private address")
    assert guarded_connections == []


def test_plain_http_is_refused_outside_development_unless_trusted_as_http(receiver, settings):
    settings.NETWORK_TRUSTED_TARGETS = ["127.0.0.1"]  # the address, but not plain http to it

    dead = send_to(receiver.url)

    assert dead.status == Delivery.Status.DEAD
    assert dead.last_error.startswith("not sent: plain http is refused outside development")
    assert receiver.requests == []

    settings.NETWORK_TRUSTED_TARGETS = ["http://127.0.0.1"]
    assert send_to(receiver.url).status == Delivery.Status.DELIVERED


def test_a_trusted_network_or_name_lets_an_internal_target_through(receiver, development, monkeypatch, settings):
    settings.NETWORK_TRUSTED_TARGETS = ["127.0.0.0/8"]
    assert send_to(receiver.url).status == Delivery.Status.DELIVERED

    monkeypatch.setattr(network, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    settings.NETWORK_TRUSTED_TARGETS = [".corp.example"]
    delivered = send_to(f"http://wms.corp.example:{port_of(receiver)}/hooks/control-tower")

    assert delivered.status == Delivery.Status.DELIVERED
    assert receiver.requests[-1].headers["Host"] == f"wms.corp.example:{port_of(receiver)}"


@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/", "/hooks/elsewhere"])
def test_a_redirect_is_a_dead_letter_and_never_followed(receiver, location):
    receiver.answer_next((302, {"Location": location}))

    dead = send_to(receiver.url)

    assert dead.status == Delivery.Status.DEAD
    assert dead.last_error == f"the receiver refused it: HTTP 302, redirected to {location} (not followed)"
    assert len(receiver.requests) == 1


def test_only_the_first_bytes_of_a_reply_are_read(receiver, settings):
    settings.OUTBOUND_MAX_RESPONSE_BYTES = 100
    receiver.body = b"x" * 100_000

    delivered = send_to(receiver.url)

    assert delivered.status == Delivery.Status.DELIVERED
    assert DeliveryAttempt.objects.get().response_body == "x" * 100


@pytest.mark.serial
def test_an_endless_reply_ends_the_attempt_by_its_deadline_and_it_is_retried(receiver, settings):
    settings.OUTBOUND_CLAIM_GRACE_SECONDS = 1
    receiver.answer_next(("trickle", 8))
    subscription = SubscriptionFactory(target_url=receiver.url, timeout_seconds=1)
    delivery = DeliveryFactory(subscription=subscription)

    started = time.monotonic()
    outcome = delivery_send(delivery.pk)
    took = time.monotonic() - started

    assert 1 <= took < 1.5
    assert outcome.result == "retry"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.claimed_until) == (Delivery.Status.PENDING, 1, None)
    assert delivery.last_error == "timed out after 1 s"
    assert delivery.next_attempt_at > timezone.now()
    assert DeliveryAttempt.objects.get().outcome == "retry"


@pytest.mark.django_db(transaction=True)
def test_a_trickling_receiver_gets_the_delivery_once_per_attempt_never_twice_at_once(receiver, settings):
    """The stuck-delivery sweep runs all along while the receiver trickles its reply past the
    claim's expiry: the attempt ends by its deadline first, so the sweep never hands it out again
    while it is still being sent."""
    settings.OUTBOUND_CLAIM_GRACE_SECONDS = 2
    settings.OUTBOUND_RETRY_BASE_SECONDS = 60
    receiver.answer_next(("trickle", 8))
    delivery = DeliveryFactory(subscription=SubscriptionFactory(target_url=receiver.url, timeout_seconds=1))

    def send() -> None:
        try:
            delivery_send(delivery.pk)
        finally:
            connection.close()  # this thread's own

    sending = threading.Thread(target=send)

    sending.start()
    until = time.monotonic() + 5  # past the claim (1 s timeout + 2 s grace), well within the trickle
    while time.monotonic() < until:
        deliveries_sweep()  # tasks run in-process: whatever it recovers is sent again right here
        time.sleep(0.1)
    sending.join(timeout=10)

    assert len(receiver.requests) == 1
    assert receiver.most_at_once == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.PENDING, 1)

    later = timezone.now() + timedelta(seconds=61)
    deliveries_sweep(now=later)
    delivery_send(delivery.pk, now=later)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.DELIVERED, 2)
    assert len(receiver.requests) == 2
    assert receiver.most_at_once == 1


def test_saving_an_internal_or_plain_http_target_is_refused_with_the_reason(settings):
    subscription = SubscriptionFactory.build(partner=PartnerFactory(kind=Partner.Kind.ERP))

    for url, reason in [
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud metadata address"),
        ("https://localhost/hook", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://hooks.example.com/in", "plain http is refused outside development"),
    ]:
        subscription.target_url = url
        with pytest.raises(ValidationError) as refused:
            subscription.full_clean()
        assert reason in refused.value.message_dict["target_url"][0]

    settings.NETWORK_TRUSTED_TARGETS = ["10.20.0.0/16"]
    subscription.target_url = "https://10.20.0.5/hook"
    subscription.full_clean()
