"""Builders of canonical events for tests: short, readable order-to-cash stories."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.timeline.events import CanonicalEvent, EventKey, EventSource, parse_events

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def ref(kind: str, value: str) -> dict[str, str]:
    return {"kind": kind, "value": value}


def event(event_id: str, kind: str, hours: float, *refs: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "kind": kind, "occurred_at": at(hours), "references": list(refs), **fields}


def events(*items: dict[str, Any], partner: str | None = None, channel: str | None = None) -> list[CanonicalEvent]:
    return parse_events(list(items), source=EventSource(partner=partner, channel=channel))


def ids(keys: Iterable[EventKey]) -> list[str]:
    """The event ids of an apply's result list, in its order."""
    return [key.event_id for key in keys]


def order_created(number: str, hours: float = 0, **fields: Any) -> dict[str, Any]:
    fields.setdefault("lines", [{"sku": "SKU-1", "quantity": "5", "unit_price": "10.00"}])
    return event(f"{number}-created", "order.created", hours, ref("order", number), ref("po", f"PO-{number}"), **fields)


def manifested(shipment: str, tracking: str, *orders: str, hours: float = 10, **fields: Any) -> dict[str, Any]:
    refs = [ref("shipment", shipment), ref("tracking", tracking), *(ref("order", o) for o in orders)]
    return event(f"{shipment}-manifested", "shipment.manifested", hours, *refs, **fields)


def carrier(tracking: str, kind: str, hours: float, **fields: Any) -> dict[str, Any]:
    return event(f"{tracking}-{kind}-{hours}", kind, hours, ref("tracking", tracking), **fields)
