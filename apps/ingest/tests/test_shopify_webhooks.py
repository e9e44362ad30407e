"""Shopify webhooks on a Shopify channel: Shopify's own signature, its retries taken once, its
topics mapped; the same answers through the Django view and the ASGI server's own path."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.ingest.models import InboundMessage
from apps.ingest.webhooks import forget_channels, signature_for
from apps.partners.credentials import channel_webhook_secret_set
from apps.partners.models import Channel, Partner
from apps.timeline.models import Milestone, Order, Shipment

from . import shopify_payloads as shopify
from .conftest import WEBHOOK_SECRET
from .test_webhook_asgi import over_asgi, over_django

pytestmark = pytest.mark.django_db(transaction=True)
SHOPIFY_SECRET = "shpss_0123456789abcdef0123456789abcdef"  # noqa: S105 - a test value
PATH = "/hooks/OUTDOOR/shopify/"


@pytest.fixture
def acme(db) -> Partner:
    return Partner.objects.create(code="ACME", name="Acme Outdoor", kind=Partner.Kind.CUSTOMER)


@pytest.fixture
def shop(acme) -> Partner:
    partner = Partner.objects.create(code="OUTDOOR", name="Acme Outdoor web shop", kind=Partner.Kind.SHOP)
    Channel.objects.create(
        partner=partner,
        code="shopify",
        format=Channel.Format.WEBHOOK,
        signature_scheme=Channel.SignatureScheme.SHOPIFY,
        customer=acme,
        webhook_secret=SHOPIFY_SECRET,
    )
    return partner


@pytest.fixture(params=["django", "asgi"])
def send(request, client):
    """POST a body with headers through one of the two webhook paths: (status, answer)."""

    def send(body: bytes, headers: dict[str, str], path: str = PATH) -> tuple[int, dict]:
        if request.param == "asgi":
            status, answer = over_asgi(body, headers, path)
            answer.pop("_headers")
            return status, answer
        return over_django(client, body, headers, path)

    return send


def deliver(send, resource: dict, topic: str, **options) -> tuple[int, dict]:
    body = shopify.as_body(resource)
    return send(body, shopify.headers(body, topic, SHOPIFY_SECRET, **options))


def test_a_signed_order_is_stored_and_becomes_an_order_of_the_channels_customer(send, shop, acme):
    status, answer = deliver(send, shopify.order("#1001"), "orders/create")

    assert status == 202, answer
    message = InboundMessage.objects.get(pk=answer["id"])
    assert (message.partner, message.format, message.status) == (shop, "shopify", "processed")
    order = Order.objects.get(number="#1001")
    assert order.customer == acme
    assert order.total_amount == Decimal("64.85")
    assert Milestone.objects.get(order=order).source_partner == shop


def test_a_wrong_signature_is_401_as_on_our_own_channels_and_nothing_is_stored(send, shop):
    body = shopify.as_body(shopify.order())
    headers = shopify.headers(body, "orders/create", "not-the-app-secret-at-all")

    status, answer = send(body, headers)

    assert (status, answer) == (401, {"detail": "X-Shopify-Hmac-Sha256 does not match the body"})
    assert headers["X-Shopify-Hmac-Sha256"] not in str(answer)
    assert not InboundMessage.objects.exists()


def test_a_body_changed_after_signing_is_refused(send, shop):
    signed = shopify.headers(shopify.as_body(shopify.order("#1001")), "orders/create", SHOPIFY_SECRET)
    status, _ = send(shopify.as_body(shopify.order("#1009")), signed)
    assert status == 401


def test_a_webhook_without_shopifys_signature_is_401(send, shop):
    body = shopify.as_body(shopify.order())
    headers = shopify.headers(body, "orders/create", SHOPIFY_SECRET)
    del headers["X-Shopify-Hmac-Sha256"]

    status, answer = send(body, headers)

    assert (status, answer) == (401, {"detail": "the X-Shopify-Hmac-Sha256 header is required"})
    assert not InboundMessage.objects.exists()


def test_our_own_signature_does_not_open_a_shopify_channel_nor_shopifys_ours(send, shop, carrier):
    body = shopify.as_body(shopify.order())
    stamp = str(int(timezone.now().timestamp()))
    ours = {"X-Timestamp": stamp, "X-Signature": signature_for(SHOPIFY_SECRET, stamp, body)}
    assert send(body, ours)[0] == 401

    as_shopify = shopify.headers(body, "orders/create", WEBHOOK_SECRET)
    status, answer = send(body, as_shopify, "/hooks/UPSN/hook/")
    assert (status, answer["detail"]) == (401, "X-Timestamp and X-Signature headers are required")
    assert not InboundMessage.objects.exists()


def test_a_retry_with_the_same_webhook_id_is_accepted_and_applied_once(send, shop):
    body = shopify.as_body(shopify.order("#1001"))
    headers = shopify.headers(body, "orders/create", SHOPIFY_SECRET, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")

    first = send(body, headers)
    retry = send(body, headers)  # the same signature, the same id, seconds or hours later

    assert (first[0], retry[0]) == (202, 200)
    assert (retry[1]["id"], retry[1]["duplicate"]) == (first[1]["id"], True)
    message = InboundMessage.objects.get()
    assert (message.idempotency_key, message.resent_count) == ("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", 1)
    assert Milestone.objects.filter(kind="order.created").count() == 1


def test_another_webhook_with_the_same_body_is_the_same_news_stored_once(send, shop):
    body = shopify.as_body(shopify.order("#1001"))

    first = send(body, shopify.headers(body, "orders/create", SHOPIFY_SECRET, webhook_id="id-one"))
    second = send(body, shopify.headers(body, "orders/create", SHOPIFY_SECRET, webhook_id="id-two"))

    assert (first[0], second[0]) == (202, 200)
    assert second[1]["id"] == first[1]["id"]
    assert InboundMessage.objects.count() == 1
    assert Milestone.objects.filter(kind="order.created").count() == 1


def test_the_same_order_sent_again_with_other_bytes_is_a_duplicate_event(send, shop):
    """Key order or spacing differ, the news does not: the event id is the same."""
    resource = shopify.order("#1001")
    spaced = b" " + shopify.as_body(resource)

    assert deliver(send, resource, "orders/create")[0] == 202
    assert send(spaced, shopify.headers(spaced, "orders/create", SHOPIFY_SECRET))[0] == 202

    second = InboundMessage.objects.order_by("pk").last()
    assert (second.status, second.events_count, second.duplicate_count) == ("processed", 1, 1)
    assert Milestone.objects.filter(kind="order.created").count() == 1


@pytest.mark.parametrize("topic", ["products/update", "orders/updated", "customers/create", ""])
def test_a_topic_not_read_is_refused_with_the_topics_that_are(send, shop, topic):
    body = shopify.as_body(shopify.order())
    headers = shopify.headers(body, topic, SHOPIFY_SECRET)
    if not topic:
        del headers["X-Shopify-Topic"]

    status, answer = send(body, headers)

    assert status == 422
    assert "not read here; this channel reads orders/create, orders/cancelled, fulfillments/create" in answer["detail"]
    assert not InboundMessage.objects.exists()


def test_the_topic_is_checked_only_once_the_signature_holds(send, shop):
    body = shopify.as_body(shopify.order())
    status, _ = send(body, shopify.headers(body, "products/update", "not-the-app-secret-at-all"))
    assert status == 401


def test_a_rotated_secret_keeps_verifying_for_the_grace_period(send, shop):
    channel = Channel.objects.get(partner=shop)
    channel_webhook_secret_set(channel=channel, secret="shpss_the_new_secret_0123456789")

    assert deliver(send, shopify.order("#1001"), "orders/create")[0] == 202  # the previous secret

    Channel.objects.filter(pk=channel.pk).update(webhook_secret_previous_until=timezone.now() - timedelta(seconds=1))
    forget_channels()  # as every process does within WEBHOOK_CHANNEL_CACHE_SECONDS
    assert deliver(send, shopify.order("#1002"), "orders/create")[0] == 401


def test_each_topic_moves_the_order_and_its_shipment_along(client, shop, acme):
    def send(body, headers):
        return over_django(client, body, headers, PATH)

    assert deliver(send, shopify.order("#1001"), "orders/create")[0] == 202
    assert deliver(send, shopify.order("#1002"), "orders/create")[0] == 202
    assert deliver(send, shopify.fulfillment("#1001"), "fulfillments/create")[0] == 202
    for status, when in [("in_transit", "2026-11-22T08:00:00-05:00"), ("delivered", "2026-11-24T13:30:00-05:00")]:
        update = shopify.fulfillment("#1001", shipment_status=status, updated_at=when)
        assert deliver(send, update, "fulfillments/update")[0] == 202
    assert deliver(send, shopify.cancelled("#1002"), "orders/cancelled")[0] == 202

    assert set(InboundMessage.objects.values_list("status", flat=True)) == {"processed"}
    shipment = Shipment.objects.get(number="#1001.1")
    assert list(shipment.orders.values_list("number", flat=True)) == ["#1001"]
    assert shipment.references.filter(kind="tracking", value="1Z999AA10123456784").exists()
    kinds = list(Milestone.objects.filter(shipment=shipment).order_by("occurred_at").values_list("kind", flat=True))
    assert kinds == [
        "shipment.manifested",
        "shipment.tracking_assigned",
        "shipment.in_transit",
        "shipment.delivered",
    ]
    assert Order.objects.get(number="#1001").delivered_at is not None
    assert Order.objects.get(number="#1002").cancelled_at is not None
    assert set(Order.objects.values_list("customer__code", flat=True)) == {"ACME"}


def test_an_unknown_shipment_status_is_kept_and_counted_as_unmapped(client, shop):
    def send(body, headers):
        return over_django(client, body, headers, PATH)

    deliver(send, shopify.order("#1001"), "orders/create")
    deliver(send, shopify.fulfillment("#1001", shipment_status="held_at_customs"), "fulfillments/update")

    message = InboundMessage.objects.order_by("pk").last()
    assert (message.status, message.unmapped_count, message.unmapped_codes) == ("processed", 1, ["held_at_customs"])
    assert Milestone.objects.filter(kind="shipment.status_unmapped", shipment__number="#1001.1").exists()
