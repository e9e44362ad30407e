"""A shipment's projected fields in the cases where the two projections could part ways.

Each test states what the shipment must show and that the stored row (projected in SQL on
PostgreSQL, in Python elsewhere) equals the Python reference projection of the same shipment.
"""

from typing import Any

import pytest

from apps.partners.models import Partner
from apps.timeline import projections
from apps.timeline.models import Milestone, Reference, Shipment
from apps.timeline.services import apply_events
from tests.stories import at, carrier, event, events, manifested, order_created, ref

pytestmark = pytest.mark.django_db


@pytest.fixture
def partners() -> dict[str, int]:
    kinds = {"UPSN": Partner.Kind.CARRIER, "ODFL": Partner.Kind.CARRIER, "DC1": Partner.Kind.WAREHOUSE}
    kinds |= {"DC2": Partner.Kind.WAREHOUSE, "ERP1": Partner.Kind.ERP, "7": Partner.Kind.CARRIER}
    return {code: Partner.objects.create(code=code, name=code, kind=kind).id for code, kind in kinds.items()}


def _shipment(number: str = "SH-1") -> dict[str, Any]:
    """The stored fields of the shipment, once checked against the reference projection."""
    stored = Shipment.objects.values_list("pk", *projections.SHIPMENT_FIELDS).get(number=number)
    assert stored[1:] == projections.projected_shipment_fields({stored[0]})[stored[0]]
    return dict(zip(projections.SHIPMENT_FIELDS, stored[1:], strict=True))


def _delayed(reason: Any, hours: float, event_id: str) -> dict[str, Any]:
    return event(event_id, "shipment.delayed", hours, ref("tracking", "1Z1"), attributes={"reason": reason})


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("WX", "WX"),
        (12, "12"),
        (1.5, "1.5"),
        (0.00002, "2e-05"),
        (0, ""),
        (True, "True"),
        (False, ""),
        (None, ""),
        ({"code": "WX", "note": "é"}, '{"code": "WX", "note": "é"}'),
        (["A1", 2], '["A1", 2]'),
        ([], ""),
        ("x" * 250, "x" * 200),
    ],
)
def test_a_delay_shows_its_reason_as_text_whatever_its_json_type(reason, shown):
    apply_events(events(manifested("SH-1", "1Z1"), _delayed("NS", 20, "d-1"), _delayed(reason, 30, "d-2")))

    assert _shipment()["delay_reason"] == shown


def test_of_estimates_given_at_the_same_time_the_one_with_the_larger_event_id_is_the_latest():
    """Event ids compare by code point, as Python compares them, whatever the database's collation."""
    apply_events(
        events(
            manifested("SH-1", "1Z1"),
            event("e-0", "shipment.eta_updated", 20, ref("tracking", "1Z1"), estimated_delivery_at=at(90)),
            event("E-1", "shipment.in_transit", 20, ref("tracking", "1Z1"), estimated_delivery_at=at(80)),
        )
    )

    assert _shipment()["estimated_delivery_at"].isoformat() == at(90)


def test_the_estimate_is_the_latest_given_and_events_without_one_keep_it():
    apply_events(
        events(
            manifested("SH-1", "1Z1", estimated_delivery_at=at(100)),
            carrier("1Z1", "shipment.eta_updated", 20, estimated_delivery_at=at(120)),
            carrier("1Z1", "shipment.in_transit", 30),
        )
    )
    assert _shipment()["estimated_delivery_at"].isoformat() == at(120)

    # An older estimate arriving late changes nothing; a newer one replaces it.
    apply_events(events(carrier("1Z1", "shipment.eta_updated", 10, estimated_delivery_at=at(90))))
    assert _shipment()["estimated_delivery_at"].isoformat() == at(120)
    apply_events(events(carrier("1Z1", "shipment.eta_updated", 40, estimated_delivery_at=at(80))))
    assert _shipment()["estimated_delivery_at"].isoformat() == at(80)


def _milestone(shipment: Shipment, kind: str, hours: float, source: int | None = None, **attributes: Any) -> None:
    """A milestone written straight to the timeline: scopes would refuse some of these senders."""
    Milestone.objects.create(
        event_id=f"{kind}-{hours}",
        kind=kind,
        occurred_at=at(hours),
        shipment=shipment,
        source_partner_id=source,
        payload={"attributes": attributes},
    )
    projections.recompute(order_ids=set(), shipment_ids={shipment.id})


def test_the_carrier_is_the_first_named_by_code_or_else_by_a_carrier_sending(partners):
    shipment = Shipment.objects.create(number="SH-1")
    _milestone(shipment, "shipment.picked_up", 5, partners["ERP1"], carrier=7)
    _milestone(shipment, "shipment.manifested", 20, partners["DC1"], carrier="UPSN")
    assert _shipment()["carrier"] == partners["UPSN"]

    _milestone(shipment, "shipment.in_transit", 10, partners["ODFL"], carrier="NOPE")
    assert _shipment()["carrier"] == partners["ODFL"]

    _milestone(shipment, "shipment.delayed", 8, partners["ODFL"], carrier="UPSN")
    assert _shipment()["carrier"] == partners["UPSN"]


def test_the_warehouse_is_the_first_named_by_a_manifest_by_code_or_else_by_a_warehouse_sending(partners):
    shipment = Shipment.objects.create(number="SH-1")
    _milestone(shipment, "shipment.picked_up", 5, partners["DC2"], warehouse="DC2")
    _milestone(shipment, "shipment.manifested", 20, partners["ERP1"], warehouse="DC2")
    assert _shipment()["warehouse"] == partners["DC2"]

    _milestone(shipment, "shipment.manifested", 10, partners["DC1"], warehouse=["DC2"])
    assert _shipment()["warehouse"] == partners["DC1"]


def test_a_shipment_without_milestones_shows_only_its_tracking_number():
    shipment = Shipment.objects.create(number="SH-1", status="delivered", delay_reason="old")
    Reference.objects.create(kind="tracking", value="1Z9", shipment=shipment)
    Reference.objects.create(kind="tracking", value="1Z10", shipment=shipment)

    projections.recompute(order_ids=set(), shipment_ids={shipment.id})

    fields = _shipment()
    assert (fields["status"], fields["tracking_number"], fields["delay_reason"]) == ("manifested", "1Z10", "")
    assert not {name for name, value in fields.items() if value is not None} - {
        "status",
        "tracking_number",
        "delay_reason",
    }


def test_a_proof_of_delivery_alone_delivers_the_shipment_when_it_came():
    apply_events(events(order_created("SO-1"), manifested("SH-1", "1Z1", "SO-1")))
    apply_events(events(carrier("1Z1", "shipment.pod_received", 40)))

    shipment = _shipment()
    assert shipment["status"] == "pod_received"
    assert shipment["delivered_at"] == shipment["pod_at"] == shipment["last_carrier_event_at"]
    assert shipment["delivered_at"].isoformat() == at(40)


def test_a_delivery_scan_after_the_proof_of_delivery_gives_the_delivery_its_own_time():
    apply_events(events(manifested("SH-1", "1Z1"), carrier("1Z1", "shipment.pod_received", 40)))
    apply_events(events(carrier("1Z1", "shipment.delivered", 45), carrier("1Z1", "shipment.in_transit", 50)))

    shipment = _shipment()
    assert (shipment["status"], shipment["delivered_at"].isoformat()) == ("pod_received", at(45))
