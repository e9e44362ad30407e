"""Recomputing projections writes only what changed, repairs what drifted, in a fixed number of queries."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import Invoice
from apps.billing.projections import recompute_billing
from apps.partners.models import Partner
from apps.timeline import projections
from apps.timeline.models import Milestone, Order, OrderLine, Shipment, ShipmentLine
from apps.timeline.services import apply_events
from tests.snapshot import snapshot
from tests.stories import carrier, event, events, manifested, order_created, ref

pytestmark = pytest.mark.django_db


@pytest.fixture
def partners():
    Partner.objects.create(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER)
    Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)


def _story(n: int) -> list[dict]:
    so, sh, tracking = f"SO-{n}", f"SH-{n}", f"1Z{n:04d}"
    return [
        order_created(so, order={"customer": "ACME", "region": "EU"}, lines=[{"sku": "A", "quantity": "2"}]),
        manifested(sh, tracking, so, lines=[{"sku": "A", "quantity": "2"}], attributes={"carrier": "UPSN"}),
        carrier(tracking, "shipment.delivered", 30),
        event(f"INV-{n}", "invoice.generated", 40, ref("invoice", f"INV-{n}"), ref("order", so), amount="20.00"),
    ]


def _recompute_all() -> None:
    order_ids = set(Order.objects.values_list("id", flat=True))
    shipment_ids = set(Shipment.objects.values_list("id", flat=True))
    projections.recompute(order_ids=order_ids, shipment_ids=shipment_ids)
    recompute_billing(order_ids=order_ids, shipment_ids=shipment_ids)


def _written() -> tuple:
    """When each projected row was last written, and which line rows exist."""
    return (
        [model.objects.get().updated_at for model in (Order, Shipment, Invoice)],
        [list(model.objects.values_list("id", flat=True)) for model in (OrderLine, ShipmentLine)],
    )


def test_a_recompute_that_changes_nothing_writes_nothing(partners):
    apply_events(events(*_story(1)))
    before = _written()

    with CaptureQueriesContext(connection) as queries:
        _recompute_all()

    assert not [q["sql"] for q in queries if q["sql"].split(None, 1)[0] in ("INSERT", "DELETE")]
    assert _written() == before


def test_a_recompute_from_ids_alone_repairs_fields_and_lines_that_drifted(partners):
    apply_events(events(*_story(1), *_story(2)))
    expected = snapshot()
    Order.objects.filter(number="SO-1").update(stage="cancelled", customer=None, last_event_at=None, region="")
    Order.objects.filter(number="SO-2").update(stage="posted", ordered_at=None, shipped_at=None, pod_at=timezone.now())
    Shipment.objects.filter(number="SH-2").update(status="in_transit", carrier=None, tracking_number="")
    OrderLine.objects.filter(order__number="SO-1").update(quantity=Decimal("9"))
    ShipmentLine.objects.filter(shipment__number="SH-1").delete()
    ShipmentLine.objects.filter(shipment__number="SH-2").update(order=None)
    Invoice.objects.filter(number="INV-2").update(status="held", amount=None)

    _recompute_all()

    assert snapshot() == expected


def test_a_recompute_takes_as_many_queries_for_one_subject_as_for_many(partners):
    apply_events(events(*[item for n in range(1, 9) for item in _story(n)]))

    def count(order_ids: set[int], shipment_ids: set[int]) -> int:
        with CaptureQueriesContext(connection) as queries:
            projections.recompute(order_ids=order_ids, shipment_ids=shipment_ids)
            recompute_billing(order_ids=order_ids, shipment_ids=shipment_ids)
        return len(queries)

    one = count({Order.objects.get(number="SO-1").id}, {Shipment.objects.get(number="SH-1").id})
    every = count(set(Order.objects.values_list("id", flat=True)), set(Shipment.objects.values_list("id", flat=True)))
    assert every == one


def test_shipping_milestones_that_name_only_the_order_move_it_on_until_it_has_shipments(partners):
    only_the_order = [
        event(f"{kind}-1", kind, hours, ref("order", "SO-1"))
        for kind, hours in (("shipment.manifested", 10), ("shipment.delivered", 20), ("shipment.pod_received", 30))
    ]
    apply_events(events(order_created("SO-1"), *only_the_order))
    order = Order.objects.get()
    assert (order.stage, order.shipped_at, order.delivered_at, order.pod_at) == (
        "delivered",
        *Milestone.objects.filter(kind__startswith="shipment.")
        .order_by("occurred_at")
        .values_list("occurred_at", flat=True),
    )

    apply_events(events(manifested("SH-1", "1Z0001", "SO-1", hours=12)))

    order.refresh_from_db()
    shipment = Shipment.objects.get()
    assert (order.stage, order.shipped_at, order.delivered_at, order.pod_at) == (
        "shipped",
        shipment.manifested_at,
        None,
        None,
    )
    stored = Order.objects.values_list("pk", *projections.ORDER_MILESTONE_FIELDS).get()
    assert stored[1:] == projections.projected_order_milestones({order.id})[order.id]
