"""A Shopify shop through its webhooks: its orders are its channel's customer's, and it may act on
that customer's orders and on its own, never on another customer's (ingest → scopes → timeline)."""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.ingest.models import InboundMessage
from apps.ingest.tests import shopify_payloads as shopify
from apps.partners.models import Channel, Partner
from apps.partners.services import api_token_create
from apps.timeline.events import EventSource, parse_events
from apps.timeline.models import Order, Shipment
from apps.timeline.services import apply_events

pytestmark = pytest.mark.django_db(transaction=True)
SECRETS = {"OUTDOOR": "shpss_outdoor_0123456789abcdef", "PEAKS": "shpss_peaks_0123456789abcdef"}


def partner(code: str, kind: str) -> Partner:
    return Partner.objects.create(code=code, name=code, kind=kind)


def shop(code: str, customer: Partner, mapping: dict | None = None) -> Partner:
    who = partner(code, Partner.Kind.SHOP)
    Channel.objects.create(
        partner=who,
        code="shopify",
        format=Channel.Format.WEBHOOK,
        signature_scheme=Channel.SignatureScheme.SHOPIFY,
        customer=customer,
        webhook_secret=SECRETS[code],
        mapping_overrides=mapping or {},
    )
    return who


def erp_order(number: str, customer: str) -> None:
    event = {
        "event_id": f"erp-{number}",
        "kind": "order.created",
        "occurred_at": "2026-11-19T08:00:00+00:00",
        "references": [{"kind": "order", "value": number}],
        "order": {"customer": customer},
    }
    apply_events(parse_events([event], source=EventSource(partner="ERP")))


def deliver(client, code: str, resource: dict, topic: str) -> InboundMessage:
    body = shopify.as_body(resource)
    headers = {
        f"HTTP_{name.upper().replace('-', '_')}": value
        for name, value in shopify.headers(body, topic, SECRETS[code]).items()
    }
    response = client.post(reverse("webhook", args=[code, "shopify"]), body, content_type="application/json", **headers)
    assert response.status_code == 202, response.content
    return InboundMessage.objects.get(pk=response.json()["id"])


@pytest.fixture
def world():
    acme, beta = partner("ACME", Partner.Kind.CUSTOMER), partner("BETA", Partner.Kind.CUSTOMER)
    partner("ERP", Partner.Kind.ERP)
    erp_order("SO-ACME-1", "ACME")
    erp_order("#2001", "BETA")
    return {"ACME": acme, "BETA": beta, "OUTDOOR": shop("OUTDOOR", acme), "PEAKS": shop("PEAKS", beta)}


def test_a_shops_order_lands_on_the_customer_its_channel_names(client, world):
    message = deliver(client, "OUTDOOR", shopify.order("#1001"), "orders/create")

    assert message.status == "processed"
    order = Order.objects.get(number="#1001")
    assert order.customer == world["ACME"]


def test_a_shop_may_cancel_and_fulfil_its_customers_orders_taken_elsewhere(client, world):
    fulfilled = deliver(client, "OUTDOOR", shopify.fulfillment("SO-ACME-1"), "fulfillments/create")
    cancelled = deliver(client, "OUTDOOR", shopify.cancelled("SO-ACME-1"), "orders/cancelled")

    assert (fulfilled.status, cancelled.status) == ("processed", "processed")
    assert Shipment.objects.filter(number="SO-ACME-1.1", orders__number="SO-ACME-1").exists()
    assert Order.objects.get(number="SO-ACME-1").cancelled_at is not None


def test_a_shop_cannot_cancel_or_fulfil_another_customers_order(client, world):
    cancelled = deliver(client, "OUTDOOR", shopify.cancelled("#2001"), "orders/cancelled")
    fulfilled = deliver(client, "OUTDOOR", shopify.fulfillment("#2001"), "fulfillments/create")

    for message in (cancelled, fulfilled):
        assert message.status == "dead"
        assert "the order is not one of OUTDOOR's own orders or ACME's" in message.error
    order = Order.objects.get(number="#2001")
    assert (order.customer, order.cancelled_at) == (world["BETA"], None)
    assert not Shipment.objects.filter(number="#2001.1").exists()


def test_another_shop_cannot_touch_an_order_the_first_shop_took(client, world):
    deliver(client, "OUTDOOR", shopify.order("#1001"), "orders/create")

    refused = deliver(client, "PEAKS", shopify.cancelled("#1001"), "orders/cancelled")

    assert refused.status == "dead"
    assert "not one of PEAKS's own orders or BETA's" in refused.error
    assert Order.objects.get(number="#1001").cancelled_at is None


def test_a_shop_sends_nothing_but_orders_and_their_fulfilment(world):
    _, raw = api_token_create(partner=world["OUTDOOR"], name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    invoice = {
        "event_id": "inv-1",
        "kind": "invoice.generated",
        "occurred_at": "2026-11-25T08:00:00+00:00",
        "references": [{"kind": "order", "value": "SO-ACME-1"}],
    }

    response = client.post(reverse("api-events"), json.dumps({"events": [invoice]}), content_type="application/json")

    assert response.status_code == 403
    assert "OUTDOOR may not send invoice.generated" in response.json()["refused"][0]["reason"]


def test_two_shops_numbering_from_the_same_number_keep_apart_with_a_prefix(client, world):
    Channel.objects.filter(partner=world["PEAKS"]).update(mapping_overrides={"order_prefix": "PEAKS-"})

    outdoor = deliver(client, "OUTDOOR", shopify.order("#1001"), "orders/create")
    peaks = deliver(client, "PEAKS", shopify.order("#1001"), "orders/create")
    fulfilled = deliver(client, "PEAKS", shopify.fulfillment("#1001"), "fulfillments/create")

    assert (outdoor.status, peaks.status, fulfilled.status) == ("processed", "processed", "processed")
    assert Order.objects.get(number="#1001").customer == world["ACME"]
    assert Order.objects.get(number="PEAKS-#1001").customer == world["BETA"]
    shipment = Shipment.objects.get(number="PEAKS-#1001.1")
    assert list(shipment.orders.values_list("number", flat=True)) == ["PEAKS-#1001"]


def test_without_a_prefix_the_second_shops_order_is_refused_not_merged(client, world):
    deliver(client, "OUTDOOR", shopify.order("#1001"), "orders/create")

    refused = deliver(client, "PEAKS", shopify.order("#1001"), "orders/create")

    assert refused.status == "dead"
    assert Order.objects.get(number="#1001").customer == world["ACME"]
