"""Partner scopes at their edges: events that name only a shipment, and mixed batches."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.partners.models import Partner
from apps.timeline.events import EventSource, parse_events
from apps.timeline.models import Milestone, ParkedEvent
from apps.timeline.services import ApplyResult, apply_events
from tests.stories import ids, ref

pytestmark = pytest.mark.django_db


def ev(event_id: str, kind: str, *refs: dict[str, str], hours: float = 0, **fields) -> dict:
    occurred = timezone.now() - timedelta(days=2) + timedelta(hours=hours)
    return {"event_id": event_id, "kind": kind, "occurred_at": occurred.isoformat(), "references": list(refs), **fields}


def send(*items: dict, sender: str | None = None) -> ApplyResult:
    return apply_events(parse_events(list(items), source=EventSource(partner=sender)))


@pytest.fixture
def world() -> None:
    """SO-1 (ACME's) released to DC1; SH-1 shipped by DC1, SH-2 manifested by our own tools."""
    for code, kind in [("ERP", "erp"), ("DC1", "warehouse"), ("DC2", "warehouse"), ("ACME", "customer")]:
        Partner.objects.create(code=code, name=code, kind=kind)
    send(
        ev("so1", "order.created", ref("order", "SO-1"), order={"customer": "ACME"}),
        ev("rel1", "order.released", ref("order", "SO-1"), hours=1, attributes={"warehouse": "DC1"}),
        sender="ERP",
    )
    send(ev("sh1", "shipment.manifested", ref("shipment", "SH-1"), ref("order", "SO-1"), hours=2), sender="DC1")
    send(ev("sh2", "shipment.manifested", ref("shipment", "SH-2"), ref("order", "SO-1"), hours=2))


def test_a_warehouse_event_naming_only_its_shipment_is_applied_at_once(world):
    result = send(ev("trk-1", "shipment.tracking_assigned", ref("shipment", "SH-1"), hours=3), sender="DC1")

    assert (ids(result.applied), result.parked, result.refused) == (["trk-1"], [], {})
    assert Milestone.objects.filter(event_id="trk-1", shipment__number="SH-1").exists()


def test_a_shipment_of_no_warehouse_is_judged_by_whom_its_orders_were_released_to(world):
    assigned = ev("trk-2", "shipment.tracking_assigned", ref("shipment", "SH-2"), hours=3)

    refused = send(assigned, sender="DC2")
    assert list(refused.refused.values()) == ["shipment.tracking_assigned: the order was released to DC1, not to DC2"]
    assert not ParkedEvent.objects.exists()

    assert ids(send(assigned, sender="DC1").applied) == ["trk-2"]
