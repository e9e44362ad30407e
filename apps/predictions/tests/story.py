"""Shipment histories told as canonical events, in hours after ``T0``, through the real apply."""

from datetime import UTC, datetime, timedelta
from typing import Any

from apps.partners.models import Partner
from apps.timeline.events import EventSource, parse_events
from apps.timeline.services import ApplyResult, apply_events
from tests.factories import PartnerFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def carrier(code: str = "FAST", name: str = "Fast Freight") -> Partner:
    return PartnerFactory(code=code, name=name, kind=Partner.Kind.CARRIER)


def _event(event_id: str, kind: str, hours: float, refs: list[tuple[str, str]], **fields: Any) -> dict[str, Any]:
    references = [{"kind": k, "value": v} for k, v in refs]
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": at(hours).isoformat(),
        "references": references,
        **fields,
    }


def shipment_events(
    number: str,
    *,
    pickup: float,
    delivered: float | None = None,
    scans: tuple[tuple[float, str], ...] = (),
    out_for_delivery: float | None = None,
    estimate: float | None = None,
    promised: float | None = None,
    carrier_code: str = "FAST",
    origin: str = "Dallas",
    region: str = "NA-East",
    customer: str | None = None,
) -> list[dict[str, Any]]:
    """An order and its one shipment: manifest an hour before pickup, then the carrier's milestones."""
    order, tracking = f"SO-{number}", f"TRK-{number}"
    header = {"region": region, **({"promised_at": at(promised).isoformat()} if promised is not None else {})}
    header.update({"customer": customer} if customer else {})
    track = [("tracking", tracking)]
    items = [
        _event(f"{order}-created", "order.created", pickup - 24, [("order", order)], order=header),
        _event(
            f"{number}-manifested",
            "shipment.manifested",
            pickup - 1,
            [("shipment", number), ("tracking", tracking), ("order", order)],
            location={"city": origin},
            attributes={"carrier": carrier_code},
        ),
        _event(
            f"{number}-picked-up",
            "shipment.picked_up",
            pickup,
            track,
            location={"city": origin},
            **({"estimated_delivery_at": at(estimate).isoformat()} if estimate is not None else {}),
        ),
    ]
    for hours, city in scans:
        items.append(_event(f"{number}-scan-{hours}", "shipment.in_transit", hours, track, location={"city": city}))
    if out_for_delivery is not None:
        items.append(_event(f"{number}-ofd", "shipment.out_for_delivery", out_for_delivery, track))
    if delivered is not None:
        items.append(_event(f"{number}-delivered", "shipment.delivered", delivered, track))
    return items


def apply(*stories: list[dict[str, Any]]) -> ApplyResult:
    return apply_events(parse_events([item for story in stories for item in story], source=EventSource()))
