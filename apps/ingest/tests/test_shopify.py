"""The Shopify parser: orders and fulfillments into canonical events, from the body alone."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.ingest.parsers import ParseContext, ParseError, get_parser
from apps.timeline.events import EventKind

from . import shopify_payloads as shopify

CONTEXT = ParseContext(partner="OUTDOOR", channel="shopify", customer="ACME")
parser = get_parser("shopify")


def parse(resource, context: ParseContext = CONTEXT):
    return parser.parse(shopify.as_body(resource), context)


def refs(event) -> list[tuple[str, str]]:
    return [(ref.kind.value, ref.value) for ref in event.references]


def test_a_new_order_is_created_for_the_channels_customer_with_its_lines_and_total():
    document = parse(shopify.order("#1001", po_number="PO-7788"))

    (event,) = document.events
    assert event.kind == EventKind.ORDER_CREATED
    assert refs(event) == [("order", "#1001"), ("po", "PO-7788")]
    assert event.occurred_at == datetime(2026, 11, 20, 14, 15, 2, tzinfo=UTC)
    assert [(line.sku, line.quantity, line.unit_price) for line in event.lines] == [
        ("TENT-2P", Decimal(1), Decimal("39.95")),
        ("PEG-10", Decimal(2), Decimal("9.95")),
    ]
    assert (event.amount, event.currency) == (Decimal("64.85"), "USD")
    assert event.order.customer == "ACME"
    assert event.attributes["shopify_order_id"] == "5600000001001"
    assert not document.warnings


def test_an_order_without_a_name_is_numbered_by_its_order_number():
    (event,) = parse({**shopify.order("#1002"), "name": None}).events
    assert refs(event) == [("order", "1002")]


def test_a_promised_date_is_read_from_the_note_attribute_the_channel_names():
    attributes = [{"name": "Delivery date", "value": "2026-11-27"}, {"name": "gift", "value": "yes"}]
    mapping = {"promised_at_attribute": "Delivery date"}
    context = ParseContext(partner="OUTDOOR", customer="ACME", time_zone="America/Los_Angeles", mapping=mapping)

    (event,) = parse(shopify.order(note_attributes=attributes), context).events

    assert event.order.promised_at.isoformat() == "2026-11-27T00:00:00-08:00"
    assert parse(shopify.order(note_attributes=attributes)).events[0].order.promised_at is None


def test_a_line_without_a_sku_keeps_its_variant_and_says_so():
    lines = [{"id": 1, "variant_id": 44_009, "sku": "", "title": "Gift card", "quantity": 1, "price": "25.00"}]
    document = parse(shopify.order(line_items=lines))

    assert [line.sku for line in document.events[0].lines] == ["44009"]
    assert document.warnings == ["order #1001 line 1: no SKU; identified as '44009'"]


def test_an_order_is_refused_while_the_channel_names_no_customer():
    with pytest.raises(ParseError, match="the channel names no customer"):
        parse(shopify.order(), ParseContext(partner="OUTDOOR"))


def test_a_cancelled_order_is_cancelled_with_shopifys_reason():
    (event,) = parse(shopify.cancelled("#1001")).events

    assert event.kind == EventKind.ORDER_CANCELLED
    assert refs(event) == [("order", "#1001")]
    assert event.occurred_at == datetime(2026, 11, 20, 16, 2, tzinfo=UTC)
    assert event.attributes["reason"] == "customer"


def test_a_new_fulfillment_is_a_manifested_shipment_of_its_order_with_tracking_and_carrier():
    manifested, tracking = parse(shopify.fulfillment("#1001")).events

    assert manifested.kind == EventKind.SHIPMENT_MANIFESTED
    assert refs(manifested) == [("shipment", "#1001.1"), ("order", "#1001"), ("tracking", "1Z999AA10123456784")]
    assert manifested.attributes["carrier"] == "UPS"
    assert [(line.sku, line.quantity) for line in manifested.lines] == [("TENT-2P", 1), ("PEG-10", 2)]
    assert tracking.kind == EventKind.SHIPMENT_TRACKING_ASSIGNED
    assert refs(tracking) == refs(manifested)


def test_a_fulfillment_without_tracking_is_manifested_alone():
    resource = shopify.fulfillment(tracking_number=None, tracking_numbers=[], tracking_company=None)
    (manifested,) = parse(resource).events
    assert refs(manifested) == [("shipment", "#1001.1"), ("order", "#1001")]
    assert "carrier" not in manifested.attributes


def test_an_order_name_with_dots_is_kept_whole():
    (manifested, _) = parse(shopify.fulfillment("ACME.2024.77", 3)).events
    assert ("order", "ACME.2024.77") in refs(manifested)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("carrier_picked_up", EventKind.SHIPMENT_PICKED_UP),
        ("in_transit", EventKind.SHIPMENT_IN_TRANSIT),
        ("out_for_delivery", EventKind.SHIPMENT_OUT_FOR_DELIVERY),
        ("ready_for_pickup", EventKind.SHIPMENT_OUT_FOR_DELIVERY),
        ("attempted_delivery", EventKind.SHIPMENT_DELIVERY_ATTEMPTED),
        ("delivered", EventKind.SHIPMENT_DELIVERED),
        ("failure", EventKind.SHIPMENT_DELAYED),
    ],
)
def test_an_updated_fulfillment_reports_its_shipment_status(status, kind):
    resource = shopify.fulfillment(shipment_status=status, updated_at="2026-11-23T15:40:00-05:00")
    *_, event = parse(resource).events

    assert event.kind == kind
    assert event.occurred_at == datetime(2026, 11, 23, 20, 40, tzinfo=UTC)
    assert ("tracking", "1Z999AA10123456784") in refs(event)
    assert ("order", "#1001") in refs(event)
    assert event.attributes["status_code"] == status


@pytest.mark.parametrize("status", ["label_printed", "label_purchased", "confirmed"])
def test_statuses_before_the_carrier_has_the_parcel_add_nothing_to_the_manifest(status):
    kinds = [event.kind for event in parse(shopify.fulfillment(shipment_status=status)).events]
    assert kinds == [EventKind.SHIPMENT_MANIFESTED, EventKind.SHIPMENT_TRACKING_ASSIGNED]


def test_a_failure_is_a_delay_with_a_reason_and_a_cancelled_fulfillment_too():
    *_, failure = parse(shopify.fulfillment(shipment_status="failure")).events
    *_, cancelled = parse(shopify.fulfillment(status="cancelled")).events

    assert (failure.kind, failure.attributes["reason"]) == (EventKind.SHIPMENT_DELAYED, "carrier exception")
    assert (cancelled.kind, cancelled.attributes["reason"]) == (EventKind.SHIPMENT_DELAYED, "shipment cancelled")


def test_an_unknown_shipment_status_is_kept_unmapped_and_listed():
    document = parse(shopify.fulfillment(shipment_status="held_at_customs"))

    *_, event = document.events
    assert event.kind == EventKind.SHIPMENT_STATUS_UNMAPPED
    assert event.attributes["status_code"] == "held_at_customs"
    assert document.unmapped_codes == ["held_at_customs"]


def test_a_channel_maps_a_status_of_its_own():
    context = ParseContext(partner="OUTDOOR", mapping={"status_codes": {"held_at_customs": "shipment.delayed"}})
    *_, event = parse(shopify.fulfillment(shipment_status="held_at_customs"), context).events
    assert event.kind == EventKind.SHIPMENT_DELAYED


def test_event_ids_are_the_same_for_the_same_news_and_new_for_new_news():
    def ids(resource):
        return [event.event_id for event in parse(resource).events]

    created = ids(shopify.fulfillment())
    assert ids(shopify.fulfillment()) == created
    in_transit = ids(shopify.fulfillment(shipment_status="in_transit", updated_at="2026-11-22T08:00:00-05:00"))
    assert in_transit[:1] == created[:1]  # the manifest again: a duplicate once applied
    assert in_transit[2] not in created
    retracked = ids(shopify.fulfillment(tracking_numbers=["1Z999AA10123456784", "1Z999AA10123456795"]))
    assert retracked[1] != created[1]
    assert ids(shopify.order()) == ids(shopify.order())
    assert ids(shopify.cancelled()) != ids(shopify.order())
    other_shop = ParseContext(partner="OTHERSHOP", customer="ACME")
    assert parse(shopify.order(), other_shop).events[0].event_id != ids(shopify.order())[0]


@pytest.mark.parametrize(
    ("resource", "error"),
    [
        ({"id": 1, "title": "Tent", "variants": []}, "neither a Shopify order"),
        ([shopify.order()], "one JSON object"),
        (shopify.fulfillment(name=None), "does not name its order"),
        (shopify.fulfillment(name="1001"), "does not name its order"),
        (shopify.order(created_at="yesterday", processed_at=None), "created_at: 'yesterday' is not a date"),
    ],
)
def test_what_is_not_an_order_or_fulfillment_is_refused_with_the_reason(resource, error):
    with pytest.raises(ParseError, match=error):
        parse(resource)
