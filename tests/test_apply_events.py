from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import FreightCharge, Invoice, ReturnAuthorization
from apps.inventory.models import InventoryPosition
from apps.partners.models import Channel, Partner
from apps.timeline import services
from apps.timeline.events import EventKey
from apps.timeline.models import (
    Milestone,
    Order,
    OrderStage,
    ParkedEvent,
    Reference,
    Shipment,
    ShipmentStatus,
)
from apps.timeline.services import apply_events, retry_parked_events
from tests.stories import carrier, event, events, ids, manifested, order_created, ref

pytestmark = pytest.mark.django_db


@pytest.fixture
def partners():
    return {
        "ACME": Partner.objects.create(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER),
        "DCLYON": Partner.objects.create(code="DCLYON", name="DC Lyon", kind=Partner.Kind.WAREHOUSE),
        "UPSN": Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER),
    }


def test_order_created_builds_the_order_with_customer_lines_and_amount(partners):
    apply_events(
        events(
            order_created(
                "SO-1",
                order={"customer": "ACME", "promised_at": "2026-11-06T17:00:00+01:00", "region": "EU-West"},
                lines=[{"sku": "SKU-1", "quantity": "5", "unit_price": "12.50"}, {"sku": "SKU-2", "quantity": "1"}],
                currency="EUR",
            )
        )
    )
    order = Order.objects.get(number="SO-1")
    assert order.customer == partners["ACME"]
    assert order.region == "EU-West"
    assert order.promised_at.isoformat() == "2026-11-06T16:00:00+00:00"
    assert order.total_amount == Decimal("62.50")
    assert order.stage == OrderStage.CREATED
    assert sorted(order.lines.values_list("sku", "quantity")) == [("SKU-1", Decimal(5)), ("SKU-2", Decimal(1))]
    assert set(order.references.values_list("kind", "value")) == {("order", "SO-1"), ("po", "PO-SO-1")}


def test_references_match_whatever_case_and_spacing_the_partner_used():
    apply_events(events(order_created("SO-1")))
    result = apply_events(events(event("rel", "order.released", 1, ref("order", " so-1 "))))
    assert ids(result.applied) == ["rel"]
    assert Order.objects.get().released_at is not None


def test_the_same_event_twice_changes_nothing():
    first = apply_events(events(order_created("SO-1")))
    again = apply_events(events(order_created("SO-1"), order_created("SO-1")))
    assert ids(first.applied) == ["SO-1-created"]
    assert ids(again.applied) == []
    assert ids(again.duplicates) == ["SO-1-created", "SO-1-created"]
    assert Milestone.objects.count() == 1


def test_an_event_for_an_unknown_order_is_parked_then_applied_when_the_order_appears():
    parked = apply_events(events(event("pick", "order.picked", 3, ref("po", "PO-SO-9"))))
    assert ids(parked.parked) == ["pick"]
    assert ParkedEvent.objects.filter(event_id="pick").exists()
    assert not Order.objects.exists()

    result = apply_events(events(order_created("SO-9")))

    assert ids(result.unparked) == ["pick"]
    assert not ParkedEvent.objects.exists()
    order = Order.objects.get(number="SO-9")
    assert order.stage == OrderStage.PICKED
    assert order.milestones.filter(kind="order.picked").exists()


def test_a_parked_event_keeps_its_source_when_applied_later(partners):
    apply_events(events(carrier("1Z1", "shipment.in_transit", 12), partner="UPSN"))
    apply_events(events(order_created("SO-1")))
    apply_events(events(manifested("SH-1", "1Z1", "SO-1", attributes={"carrier": "UPSN"}), partner="DCLYON"))
    milestone = Milestone.objects.get(kind="shipment.in_transit")
    assert milestone.source_partner == partners["UPSN"]
    assert Shipment.objects.get().carrier == partners["UPSN"]


def test_tracking_before_manifest_before_order_chains_through_parking():
    apply_events(events(carrier("1Z1", "shipment.delivered", 30)))
    apply_events(events(manifested("SH-1", "1Z1", "SO-1")))
    shipment = Shipment.objects.get(number="SH-1")
    assert shipment.status == ShipmentStatus.DELIVERED
    assert not shipment.orders.exists()

    apply_events(events(order_created("SO-1")))

    order = Order.objects.get(number="SO-1")
    assert list(order.shipments.all()) == [shipment]
    assert order.stage == OrderStage.DELIVERED
    assert order.delivered_at == shipment.delivered_at


def test_an_older_carrier_event_never_moves_a_delivered_shipment_back():
    apply_events(events(order_created("SO-1"), manifested("SH-1", "1Z1", "SO-1")))
    apply_events(events(carrier("1Z1", "shipment.delivered", 40)))
    apply_events(events(carrier("1Z1", "shipment.in_transit", 20), carrier("1Z1", "shipment.out_for_delivery", 35)))
    shipment = Shipment.objects.get()
    assert shipment.status == ShipmentStatus.DELIVERED
    assert shipment.in_transit_at is not None
    assert Order.objects.get().stage == OrderStage.DELIVERED


def test_a_consolidated_shipment_links_every_order_it_carries_even_one_created_later():
    apply_events(events(order_created("SO-1")))
    lines = [
        {"sku": "SKU-1", "quantity": "5", "order": "SO-1"},
        {"sku": "SKU-1", "quantity": "2", "order": "SO-2"},
    ]
    apply_events(events(manifested("SH-1", "1Z1", "SO-1", "SO-2", lines=lines)))
    shipment = Shipment.objects.get()
    assert list(shipment.orders.values_list("number", flat=True)) == ["SO-1"]

    apply_events(events(order_created("SO-2")))

    assert sorted(shipment.orders.values_list("number", flat=True)) == ["SO-1", "SO-2"]
    by_order = dict(shipment.lines.values_list("order__number", "quantity"))
    assert by_order == {"SO-1": Decimal(5), "SO-2": Decimal(2)}
    assert Order.objects.get(number="SO-2").stage == OrderStage.SHIPPED


def test_an_order_in_two_shipments_is_delivered_when_the_last_one_is():
    apply_events(
        events(
            order_created("SO-1"),
            manifested("SH-1", "1Z1", "SO-1", hours=10),
            manifested("SH-2", "1Z2", "SO-1", hours=20),
            carrier("1Z1", "shipment.delivered", 30),
        )
    )
    order = Order.objects.get()
    assert order.stage == OrderStage.PARTIALLY_DELIVERED
    assert order.delivered_at is None
    assert order.shipped_at.hour == 18  # first manifest, 10 h after 08:00

    apply_events(events(carrier("1Z2", "shipment.delivered", 50)))

    order.refresh_from_db()
    assert order.stage == OrderStage.DELIVERED
    assert order.delivered_at == Shipment.objects.get(number="SH-2").delivered_at


def test_sales_orders_sharing_a_customer_po_stay_separate_orders():
    apply_events(events(event("c1", "order.created", 0, ref("order", "SO-1"), ref("po", "PO-9"), lines=[])))
    apply_events(events(event("c2", "order.created", 1, ref("order", "SO-2"), ref("po", "PO-9"), lines=[])))
    apply_events(events(event("r2", "order.released", 2, ref("order", "SO-2"), ref("po", "PO-9"))))

    assert sorted(Order.objects.values_list("number", flat=True)) == ["SO-1", "SO-2"]
    assert Order.objects.get(number="SO-2").stage == OrderStage.RELEASED
    assert Order.objects.get(number="SO-1").stage == OrderStage.CREATED
    assert Reference.objects.filter(kind="po", value="PO-9").count() == 2


def test_an_order_event_naming_an_unknown_order_number_waits_rather_than_joining_its_po():
    apply_events(events(event("c1", "order.created", 0, ref("order", "SO-1"), ref("po", "PO-9"))))
    result = apply_events(events(event("p2", "order.picked", 2, ref("order", "SO-2"), ref("po", "PO-9"))))
    assert ids(result.parked) == ["p2"]
    assert Order.objects.get(number="SO-1").picked_at is None


def test_shipments_under_one_master_bill_stay_separate_and_a_po_level_asn_links_every_order():
    apply_events(
        events(
            event("c1", "order.created", 0, ref("order", "SO-1"), ref("po", "PO-9")),
            event("c2", "order.created", 0, ref("order", "SO-2"), ref("po", "PO-9")),
        )
    )
    apply_events(events(event("m1", "shipment.manifested", 5, ref("shipment", "SH-1"), ref("bol", "MB-1"))))
    apply_events(
        events(event("m2", "shipment.manifested", 6, ref("shipment", "SH-2"), ref("bol", "MB-1"), ref("po", "PO-9")))
    )
    assert sorted(Shipment.objects.values_list("number", flat=True)) == ["SH-1", "SH-2"]
    assert sorted(Shipment.objects.get(number="SH-2").orders.values_list("number", flat=True)) == ["SO-1", "SO-2"]

    # A third order joins the PO later: the shipment that named the PO is linked to it too.
    apply_events(events(event("c3", "order.created", 7, ref("order", "SO-3"), ref("po", "PO-9"))))
    assert Shipment.objects.get(number="SH-2").orders.count() == 3
    assert Order.objects.get(number="SO-3").stage == OrderStage.SHIPPED


@pytest.mark.parametrize("arrival", [["edi", "hook"], ["hook", "edi"]])
def test_the_same_milestone_from_two_channels_is_recorded_once_with_both_sources(partners, arrival):
    Channel.objects.create(partner=partners["UPSN"], code="edi", format=Channel.Format.X12)
    Channel.objects.create(partner=partners["UPSN"], code="hook", format=Channel.Format.WEBHOOK)
    apply_events(events(order_created("SO-1"), manifested("SH-1", "1Z1", "SO-1", attributes={"carrier": "UPSN"})))
    reports = {
        "edi": event("a-214-D1", "shipment.delivered", 30, ref("tracking", "1Z1"), location={"city": "Reno"}),
        "hook": event("b-hook-delivered", "shipment.delivered", 30, ref("pro", "P1"), ref("tracking", "1Z1")),
    }
    for channel in arrival:
        apply_events(events(reports[channel], partner="UPSN", channel=channel))

    [milestone] = Milestone.objects.filter(kind="shipment.delivered")
    assert milestone.event_id == "a-214-D1"
    assert milestone.source_channel.code == "edi"
    assert [(r.event_id, r.source_channel.code) for r in milestone.other_reports.all()] == [
        ("b-hook-delivered", "hook")
    ]
    again = apply_events(events(reports["hook"], partner="UPSN", channel="hook"))
    assert ids(again.duplicates) == ["b-hook-delivered"]


def test_eta_delay_and_damage_show_on_the_shipment():
    apply_events(
        events(
            order_created("SO-1"),
            manifested("SH-1", "1Z1", "SO-1"),
            carrier("1Z1", "shipment.eta_updated", 12, estimated_delivery_at="2026-11-05T12:00:00+00:00"),
            carrier("1Z1", "shipment.eta_updated", 14, estimated_delivery_at="2026-11-06T12:00:00+00:00"),
            carrier("1Z1", "shipment.delayed", 15, attributes={"reason": "Weather"}),
            carrier("1Z1", "shipment.damaged", 16),
        )
    )
    shipment = Shipment.objects.get()
    assert shipment.estimated_delivery_at.isoformat() == "2026-11-06T12:00:00+00:00"
    assert shipment.delay_reason == "Weather"
    assert shipment.damaged_at is not None
    assert shipment.status == ShipmentStatus.MANIFESTED


def test_invoice_freight_and_return_are_projected(partners):
    apply_events(
        events(
            order_created("SO-1"),
            manifested("SH-1", "1Z1", "SO-1"),
            event("pro", "shipment.picked_up", 11, ref("tracking", "1Z1"), ref("pro", "PRO-1")),
            event("inv-held", "invoice.held", 42, ref("invoice", "INV-1"), attributes={"reason": "variance"}),
            event("inv-gen", "invoice.generated", 40, ref("invoice", "INV-1"), ref("order", "SO-1"), amount="50.00"),
            event(
                "fb-post",
                "freight.charge_posted",
                45,
                ref("pro", "PRO-1"),
                ref("invoice", "FB-77"),
                amount="120.00",
                currency="USD",
                attributes={"carrier": "UPSN", "quoted_amount": "100.00"},
            ),
            event("fb-settle", "freight.charge_settled", 60, ref("pro", "PRO-1"), ref("invoice", "FB-77")),
            event("rma", "return.authorized", 70, ref("rma", "RMA-1"), ref("order", "SO-1")),
        )
    )
    invoice = Invoice.objects.get()
    assert (invoice.number, invoice.status, invoice.amount) == ("INV-1", Invoice.Status.HELD, Decimal(50))
    assert invoice.hold_reason == "variance"
    charge = FreightCharge.objects.get()
    assert (charge.number, charge.status, charge.carrier) == ("FB-77", FreightCharge.Status.SETTLED, partners["UPSN"])
    assert (charge.amount, charge.quoted_amount) == (Decimal(120), Decimal(100))
    assert ReturnAuthorization.objects.get().order.number == "SO-1"
    assert Order.objects.get().stage == OrderStage.INVOICED
    # A freight bill number is the carrier's, never a customer invoice reference of the order.
    assert not Reference.objects.filter(value="FB-77").exists()


def test_inventory_positions_are_the_latest_snapshot_plus_later_adjustments(partners):
    apply_events(
        events(
            event("adj-late", "inventory.adjusted", 30, lines=[{"sku": "SKU-1", "quantity": "-2"}]),
            event("snap-2", "inventory.snapshot", 20, lines=[{"sku": "SKU-1", "quantity": "40"}]),
            event("adj-old", "inventory.adjusted", 5, lines=[{"sku": "SKU-1", "quantity": "7"}]),
            event("snap-1", "inventory.snapshot", 0, lines=[{"sku": "SKU-1", "quantity": "10"}]),
            partner="DCLYON",
        )
    )
    position = InventoryPosition.objects.get()
    assert (position.warehouse.code, position.quantity) == ("DCLYON", Decimal(38))


def test_inventory_without_a_known_warehouse_is_rejected_with_a_reason():
    result = apply_events(events(event("snap", "inventory.snapshot", 0, lines=[{"sku": "A", "quantity": "1"}])))
    assert "names no warehouse" in result.rejected[EventKey("", "snap")]
    assert not Milestone.objects.exists()


def test_source_partner_and_channel_are_recorded(partners):
    erp = Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)
    channel = Channel.objects.create(partner=erp, code="orders", format=Channel.Format.X12)
    apply_events(events(order_created("SO-1"), partner="ERP", channel="orders"))
    milestone = Milestone.objects.get()
    assert (milestone.source_partner, milestone.source_channel) == (erp, channel)


def test_retry_parked_events_applies_what_now_correlates():
    apply_events(events(event("rel", "order.released", 1, ref("order", "SO-5"))))
    # The order's reference appeared without passing through the parking lot (e.g. a race).
    order = Order.objects.create(number="SO-5")
    Reference.objects.create(kind="order", value="SO-5", order=order)

    result = retry_parked_events()

    assert ids(result.applied) == ["rel"]
    order.refresh_from_db()
    assert order.stage == OrderStage.RELEASED


def test_an_event_waiting_for_its_shipment_is_not_taken_round_and_round_after_commit(
    django_capture_on_commit_callbacks,
):
    """It names a known order but an unknown tracking number: the apply's after-commit retry
    leaves it where it is, since no reference it carries gained a subject meanwhile."""
    apply_events(events(order_created("SO-1")))
    apply_events(events(event("waits", "shipment.in_transit", 3, ref("tracking", "7Z7"), ref("order", "SO-1"))))
    parked_at_first = ParkedEvent.objects.get(event_id="waits").pk

    with django_capture_on_commit_callbacks() as after_commit:
        apply_events(events(event("other", "shipment.in_transit", 4, ref("tracking", "8Z8"), ref("order", "SO-1"))))
    with django_capture_on_commit_callbacks() as after_the_retry:
        for callback in after_commit:
            callback()

    assert ParkedEvent.objects.get(event_id="waits").pk == parked_at_first
    assert set(ParkedEvent.objects.values_list("event_id", flat=True)) == {"waits", "other"}
    assert after_the_retry == []


def test_the_periodic_retry_leaves_an_event_no_reference_appeared_for_since_it_was_parked():
    """It waits for its shipment; the order it names was known hours before it was parked."""
    with time_machine.travel(timezone.now() - timedelta(hours=3)):
        apply_events(events(order_created("SO-1")))
    apply_events(events(event("waits", "shipment.in_transit", 3, ref("tracking", "7Z7"), ref("order", "SO-1"))))
    parked_first = ParkedEvent.objects.get(event_id="waits").pk

    retry_parked_events()

    assert ParkedEvent.objects.get(event_id="waits").pk == parked_first


def test_a_retry_over_references_takes_every_event_they_free_page_after_page():
    apply_events(events(*(event(f"rel-{n}", "order.released", 1, ref("order", f"SO-{n}")) for n in range(3))))
    # Another worker's orders, committed while these were being parked.
    for n in range(3):
        Reference.objects.create(kind="order", value=f"SO-{n}", order=Order.objects.create(number=f"SO-{n}"))

    result = retry_parked_events(keys={("order", f"SO-{n}") for n in range(3)}, limit=2)

    assert sorted(ids(result.applied)) == ["rel-0", "rel-1", "rel-2"]
    assert not ParkedEvent.objects.exists()


def test_applied_events_are_broadcast_once_committed(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("apps.timeline.realtime.broadcast_orders_changed", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        apply_events(events(order_created("SO-1")))
    assert sent == [[Order.objects.get().id]]


def _story(n: int) -> list[dict]:
    so, sh, tr = f"SO-{n}", f"SH-{n}", f"1Z{n:06d}"
    return [
        order_created(so),
        event(f"{so}-rel", "order.released", 1, ref("order", so)),
        manifested(sh, tr, so),
        carrier(tr, "shipment.in_transit", 12),
        carrier(tr, "shipment.delivered", 30),
        event(f"{so}-inv", "invoice.generated", 40, ref("invoice", f"INV-{n}"), ref("order", so), amount="5"),
    ]


def test_applying_a_thousand_events_costs_about_the_queries_of_a_few():
    with CaptureQueriesContext(connection) as small:
        apply_events(events(*_story(0)))
    stories = [item for n in range(1, 168) for item in _story(n)]
    assert len(stories) > 1000
    with CaptureQueriesContext(connection) as large:
        apply_events(events(*stories))
    # 167 times the events; bulk writes split into batches (SQLite takes fewer rows per
    # statement), but the count must stay near flat, never grow with the number of events.
    assert len(large) <= 2 * len(small), [q["sql"][:80] for q in large.captured_queries]
    assert Order.objects.filter(stage=OrderStage.INVOICED).count() == 168


def test_an_event_parked_while_its_reference_was_being_created_elsewhere_is_applied_after_commit(
    django_capture_on_commit_callbacks,
):
    """Two workers crossing: this one parks a scan for a tracking number that another worker's
    ship notice is creating in a transaction this one cannot see yet."""
    with django_capture_on_commit_callbacks() as callbacks:
        result = apply_events(events(carrier("1Z9", "shipment.delivered", 30)))
    assert ids(result.parked) == ["1Z9-shipment.delivered-30"]
    # The other worker commits its ship notice before this transaction's hooks run.
    apply_events(events(order_created("SO-9")))
    shipment = Shipment.objects.create(number="SH-9")
    Reference.objects.create(kind="tracking", value="1Z9", shipment=shipment)

    for callback in callbacks:
        callback()

    assert not ParkedEvent.objects.exists()
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.DELIVERED


def _park_a_scan_its_shipment_then_appears(django_capture_on_commit_callbacks) -> list:
    """The after-commit hooks of an apply that parked a scan whose shipment another worker
    committed meanwhile."""
    with django_capture_on_commit_callbacks() as callbacks:
        apply_events(events(carrier("1Z9", "shipment.delivered", 30)))
    Reference.objects.create(kind="tracking", value="1Z9", shipment=Shipment.objects.create(number="SH-9"))
    return callbacks


def _collide(monkeypatch, times: int) -> None:
    """The retry's first ``times`` transactions lose a deadlock to another worker's."""
    real = services._retry_parked
    collisions = iter(range(times))

    def retry(parked_ids):
        if next(collisions, None) is not None:
            raise OperationalError("deadlock detected")
        return real(parked_ids)

    monkeypatch.setattr(services, "_retry_parked", retry)
    monkeypatch.setattr(services, "AFTER_COMMIT_PAUSE", 0)


def test_a_retry_after_commit_that_loses_a_deadlock_is_tried_again(django_capture_on_commit_callbacks, monkeypatch):
    callbacks = _park_a_scan_its_shipment_then_appears(django_capture_on_commit_callbacks)
    _collide(monkeypatch, times=1)

    for callback in callbacks:
        callback()

    assert not ParkedEvent.objects.exists()
    assert Shipment.objects.get().status == ShipmentStatus.DELIVERED


def test_a_retry_after_commit_that_keeps_colliding_leaves_the_event_parked_and_the_hooks_running(
    django_capture_on_commit_callbacks, monkeypatch, caplog
):
    """The periodic retry takes the event later; the commit hooks after this one (the unit of
    work's reactions) still run."""
    callbacks = _park_a_scan_its_shipment_then_appears(django_capture_on_commit_callbacks)
    _collide(monkeypatch, times=3)

    for callback in callbacks:
        callback()

    assert ParkedEvent.objects.get().event_id == "1Z9-shipment.delivered-30"
    assert "left to the periodic retry after 3 attempts: deadlock detected" in caplog.text
    assert ids(retry_parked_events().applied) == ["1Z9-shipment.delivered-30"]
