"""The outbox: a new milestone is published once, in its own transaction, to the subscriptions it concerns."""

from pathlib import Path

import pytest
from django.db import transaction

from apps.ingest.models import OutboundMessage
from apps.ingest.services import message_process, message_receive
from apps.outbound.models import Delivery, OutboundEvent
from apps.partners.models import Partner
from apps.timeline.services import apply_events
from tests.factories import ChannelFactory, EdiIdentifierFactory, PartnerFactory, SubscriptionFactory
from tests.stories import carrier, event, events, manifested, order_created, ref

pytestmark = pytest.mark.django_db

DOCUMENTS = Path(__file__).resolve().parents[2] / "ingest" / "tests" / "documents" / "x12"


@pytest.fixture
def acme() -> Partner:
    return PartnerFactory(code="ACME", kind=Partner.Kind.CUSTOMER)


@pytest.fixture
def globex() -> Partner:
    return PartnerFactory(code="GLOBEX", kind=Partner.Kind.CUSTOMER)


def story(order: str = "SO-1", customer: str = "ACME", region: str = "EU-West") -> list:
    return events(
        order_created(order, order={"customer": customer, "region": region}),
        event(f"{order}-released", "order.released", 1, ref("order", order)),
        manifested(f"SH-{order}", f"1Z{order}", order),
        carrier(f"1Z{order}", "shipment.delivered", 30),
    )


def kinds_delivered(subscription) -> list[str]:
    return sorted(Delivery.objects.filter(subscription=subscription).values_list("kind", flat=True))


def test_each_new_milestone_gets_one_delivery_per_matching_subscription(acme, django_capture_on_commit_callbacks):
    shipments = SubscriptionFactory(event_kinds=["shipment.*"])
    releases = SubscriptionFactory(event_kinds=["order.released", "invoice.*"])
    everything = SubscriptionFactory(event_kinds=["*"])
    SubscriptionFactory(event_kinds=["*"], active=False)

    with django_capture_on_commit_callbacks() as callbacks:
        apply_events(story())

    assert kinds_delivered(shipments) == ["shipment.delivered", "shipment.manifested"]
    assert kinds_delivered(releases) == ["order.released"]
    assert kinds_delivered(everything) == [
        "order.created",
        "order.released",
        "shipment.delivered",
        "shipment.manifested",
    ]
    assert OutboundEvent.objects.count() == 4
    assert Delivery.objects.count() == 7
    assert callbacks, "sending starts once the transaction commits"


def test_nothing_is_published_when_the_milestone_is_rolled_back(acme):
    SubscriptionFactory(event_kinds=["*"])

    def apply_then_fail() -> None:
        with transaction.atomic():
            apply_events(story())
            raise RuntimeError("the apply fails after recording")

    with pytest.raises(RuntimeError):
        apply_then_fail()

    assert not OutboundEvent.objects.exists()
    assert not Delivery.objects.exists()


def test_a_duplicate_or_a_second_source_for_the_same_milestone_publishes_nothing_new(acme):
    subscription = SubscriptionFactory(event_kinds=["shipment.delivered"])
    apply_events(story())
    delivered = carrier("1ZSO-1", "shipment.delivered", 30)

    apply_events(events(delivered))  # the same event again
    apply_events(events({**delivered, "event_id": "webhook-copy"}, partner="UPSN"))  # another source, same fact
    apply_events(events({**delivered, "event_id": "0-first-by-id"}))  # a smaller id taking over the milestone

    assert Delivery.objects.filter(subscription=subscription).count() == 1


def test_customer_and_region_filters_choose_the_orders(acme, globex):
    for_globex = SubscriptionFactory(event_kinds=["*"], customers=[globex])
    for_us = SubscriptionFactory(event_kinds=["order.created"], regions=["US-East"])

    apply_events(story("SO-1", "ACME", "EU-West"))
    apply_events(story("SO-2", "GLOBEX", "US-East"))

    assert set(Delivery.objects.filter(subscription=for_globex).values_list("order__number", flat=True)) == {"SO-2"}
    assert list(Delivery.objects.filter(subscription=for_us).values_list("order__number", flat=True)) == ["SO-2"]


def test_a_customer_only_ever_receives_its_own_orders(acme, globex):
    own = SubscriptionFactory(partner=acme, event_kinds=["*"])
    # Even a filter naming another customer does not widen what a customer receives.
    widened = SubscriptionFactory(partner=acme, event_kinds=["*"], customers=[globex])

    apply_events(story("SO-1", "ACME"))
    apply_events(story("SO-2", "GLOBEX"))

    assert set(Delivery.objects.filter(subscription=own).values_list("order__number", flat=True)) == {"SO-1"}
    assert not Delivery.objects.filter(subscription=widened).exists()


def test_the_published_document_is_the_event_with_its_orders_and_shipment_but_no_internal_notes(acme):
    SubscriptionFactory(event_kinds=["shipment.manifested", "invoice.released"])
    apply_events(story())
    apply_events(
        events(
            event(
                "inv-released",
                "invoice.released",
                40,
                ref("invoice", "INV-1"),
                ref("order", "SO-1"),
                attributes={"released_by": "fin.anna", "note": "customer called, fine", "carrier": "UPSN"},
            )
        )
    )

    manifest = OutboundEvent.objects.get(kind="shipment.manifested").payload
    assert manifest["event_id"] == "SH-SO-1-manifested"
    assert manifest["orders"] == [{"number": "SO-1", "region": "EU-West"}]
    assert manifest["shipment"] == {"number": "SH-SO-1", "tracking_number": "1ZSO-1", "carrier": None}
    assert {"kind": "tracking", "value": "1ZSO-1"} in manifest["references"]
    released = OutboundEvent.objects.get(kind="invoice.released").payload
    assert released["attributes"] == {"carrier": "UPSN"}
    assert "message" not in released["source"]


def test_x12_subscriptions_receive_invoices_only(acme):
    EdiIdentifierFactory(partner=acme)
    x12 = SubscriptionFactory(partner=acme, format="x12", event_kinds=["invoice.generated"])

    apply_events(story())
    apply_events(
        events(event("inv-1", "invoice.generated", 40, ref("invoice", "INV-SO-1"), ref("order", "SO-1"), amount="50"))
    )

    assert kinds_delivered(x12) == ["invoice.generated"]


def test_an_inbound_x12_message_has_its_997_delivered_to_the_senders_x12_subscription(
    settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.OUTBOX_DIR = tmp_path
    wms = PartnerFactory(code="ACMEWMS", kind=Partner.Kind.WAREHOUSE)
    EdiIdentifierFactory(partner=wms, qualifier="ZZ", value="ACMEWMS")
    channel = ChannelFactory(partner=wms, code="edi-out", format="x12", direction="outbound")
    subscription = SubscriptionFactory(
        partner=wms, channel=channel, target_url="", format="x12", event_kinds=[], acknowledgments=True
    )
    message, _ = message_receive(
        body=(DOCUMENTS / "856_sopi.edi").read_bytes(), source="file", partner=wms, enqueue=False
    )

    with django_capture_on_commit_callbacks(execute=True):
        message_process(message.pk)

    acknowledgment = OutboundMessage.objects.get(inbound=message, kind="997")
    delivery = Delivery.objects.get(subscription=subscription)
    assert (delivery.document, delivery.status) == (acknowledgment, Delivery.Status.DELIVERED)
    acknowledgment.refresh_from_db()
    assert acknowledgment.status == OutboundMessage.Status.SENT
    [written] = (tmp_path / "ACMEWMS" / "edi-out").iterdir()
    assert written.read_text() == acknowledgment.body
    assert "AK1*SH*101" in written.read_text()
