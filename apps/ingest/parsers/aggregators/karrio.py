"""karrio: tracker webhooks ``{"id", "type": "tracker.updated", "data": {tracker}}``, or a tracker
as its tracking API returns it: bare, or as ``{"tracking": {tracker}, "messages": [...]}``.

A bare tracker is recognised by ``"object_type": "tracker"``, or, where a version leaves that out,
by the ``carrier_name`` and ``carrier_id`` next to its ``tracking_number`` (no other aggregator
names its carrier with both).

A tracker has ``tracking_number``, ``carrier_name``, ``status``, ``estimated_delivery`` (a date)
and ``events[]`` with separate ``date`` and ``time`` fields (local, no zone: the partner's zone
is assumed and the event says so), ``description``, ``code`` (the carrier's own), ``location`` (one
string) and, in newer versions, ``status``. Events without a status rely on the tracker's status.

| status            | milestone            | canonical kind              |
|-------------------|----------------------|-----------------------------|
| pending           | pre_transit          | shipment.tracking_assigned  |
| picked_up         | picked_up            | shipment.picked_up          |
| in_transit        | in_transit           | shipment.in_transit         |
| out_for_delivery  | out_for_delivery     | shipment.out_for_delivery   |
| ready_for_pickup  | available_for_pickup | shipment.out_for_delivery   |
| delivery_failed   | attempted            | shipment.delivery_attempted |
| delivered         | delivered            | shipment.delivered          |
| on_hold           | exception            | shipment.delayed            |
| delivery_delayed  | exception            | shipment.delayed            |
| return_to_sender  | returned             | shipment.delayed            |
| cancelled         | cancelled            | shipment.delayed            |
| unknown           | —                    | shipment.status_unmapped    |
"""

from collections.abc import Iterator
from typing import Any

from apps.ingest.parsers.aggregators.tracking import (
    Adapter,
    Checkpoint,
    Milestone,
    Tracker,
    as_dict,
    as_list,
    codes,
    location,
    status_table,
    text,
    without,
)

M = Milestone
STATUSES = status_table(
    {
        "pending": M.PRE_TRANSIT,
        "picked_up": M.PICKED_UP,
        "in_transit": M.IN_TRANSIT,
        "out_for_delivery": M.OUT_FOR_DELIVERY,
        "ready_for_pickup": M.AVAILABLE_FOR_PICKUP,
        "delivery_failed": M.ATTEMPTED,
        "delivered": M.DELIVERED,
        "on_hold": M.EXCEPTION,
        "delivery_delayed": M.EXCEPTION,
        "return_to_sender": M.RETURNED,
        "cancelled": M.CANCELLED,
    }
)


def _tracker(body: dict[str, Any]) -> dict[str, Any]:
    if text(body.get("type")).startswith("tracker."):
        return as_dict(body.get("data"))
    if isinstance(body.get("tracking"), dict) and "messages" in body:
        body = body["tracking"]
    return body if _is_tracker(body) else {}


def _is_tracker(body: dict[str, Any]) -> bool:
    if "object_type" in body:
        return text(body.get("object_type")) == "tracker"
    return bool(text(body.get("carrier_name")) and text(body.get("carrier_id")))


def matches(body: dict[str, Any]) -> bool:
    return bool(text(_tracker(body).get("tracking_number")))


def _time(event: dict[str, Any]) -> Any:
    day = text(event.get("date"))
    return (day, text(event.get("time"))) if day else event.get("timestamp")


def _checkpoint(event: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        time=_time(event),
        codes=codes(event.get("status")),
        message=text(event.get("description")),
        location=location(name=event.get("location"), latitude=event.get("latitude"), longitude=event.get("longitude")),
        raw=event,
    )


def read(body: dict[str, Any]) -> Iterator[Tracker]:
    tracker = _tracker(body)
    yield Tracker(
        tracking_number=text(tracker.get("tracking_number")),
        carrier=text(tracker.get("carrier_name")),
        codes=codes(tracker.get("status")),
        updated_at=tracker.get("updated_at"),
        estimated_delivery=tracker.get("estimated_delivery"),
        checkpoints=[_checkpoint(as_dict(event)) for event in as_list(tracker.get("events"))],
        raw=without(tracker, "events"),
    )


ADAPTER = Adapter("karrio", STATUSES, matches, read)
looks_like = ADAPTER.looks_like
parse = ADAPTER.parse
