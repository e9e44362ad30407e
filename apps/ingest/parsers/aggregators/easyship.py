"""Easyship: ``shipment.tracking.status.changed`` and ``shipment.tracking.checkpoints.created``.

The tracking sits under ``tracking_status`` (API v1) or ``data`` (later versions): ``tracking_number``,
``status`` (words, below), ``platform_order_number`` (added as an order reference) and
``checkpoints[]`` (``{}`` when there are none) with ``checkpoint_time``, ``primary_status``,
``message``, ``handler`` (the carrier), place fields and ``order_number`` (their true order: times
are the carriers' local times).

| status (case and spacing ignored)                           | milestone        | canonical kind              |
|-------------------------------------------------------------|------------------|-----------------------------|
| Pending Tracking Event, Tracking Information Received       | pre_transit      | shipment.tracking_assigned  |
| Shipped, Shipped (No Tracking Provided), In Transit to      | in_transit       | shipment.in_transit         |
| Customer, In Transit to / Arrived at / Processing at        |                  |                             |
| Consolidation Center                                        |                  |                             |
| Out for Delivery                                            | out_for_delivery | shipment.out_for_delivery   |
| Failed Delivery Attempt                                     | attempted        | shipment.delivery_attempted |
| Delivered                                                   | delivered        | shipment.delivered          |
| Exception, Lost by Courier, Liquidated                      | exception        | shipment.delayed            |
| No Recent Tracking Updates, Delivery Expected (End of       | expired          | shipment.delayed            |
| Updates)                                                    |                  |                             |
| To be returned                                              | returned         | shipment.delayed            |
| Cancelled, Cancelled, Pending Refund, Cancelled and Refunded| cancelled        | shipment.delayed            |
| Uncancelled, others                                         | —                | shipment.status_unmapped    |
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
    first,
    location,
    status_table,
    text,
    without,
)
from apps.timeline.events import ReferenceKind

M = Milestone
STATUSES = status_table(
    {
        "Pending Tracking Event": M.PRE_TRANSIT,
        "Tracking Information Received": M.PRE_TRANSIT,
        "Shipped": M.IN_TRANSIT,
        "Shipped (No Tracking Provided)": M.IN_TRANSIT,
        "In Transit to Customer": M.IN_TRANSIT,
        "In Transit to Consolidation Center": M.IN_TRANSIT,
        "Arrived at Consolidation Center": M.IN_TRANSIT,
        "Processing at Consolidation Center": M.IN_TRANSIT,
        "Out for Delivery": M.OUT_FOR_DELIVERY,
        "Failed Delivery Attempt": M.ATTEMPTED,
        "Delivered": M.DELIVERED,
        "Exception": M.EXCEPTION,
        "Lost by Courier": M.EXCEPTION,
        "Liquidated": M.EXCEPTION,
        "No Recent Tracking Updates": M.EXPIRED,
        "Delivery Expected (End of Updates)": M.EXPIRED,
        "To be returned": M.RETURNED,
        "Cancelled": M.CANCELLED,
        "Cancelled, Pending Refund": M.CANCELLED,
        "Cancelled and Refunded": M.CANCELLED,
    }
)


def _tracking(body: dict[str, Any]) -> dict[str, Any]:
    return as_dict(body.get("tracking_status")) or as_dict(body.get("data"))


def matches(body: dict[str, Any]) -> bool:
    tracking = _tracking(body)
    return text(body.get("event_type")).startswith("shipment.tracking.") and bool(text(tracking.get("tracking_number")))


def _sequence(value: Any) -> int:
    number = text(value)
    return int(number) if number.isdigit() else 0


def _checkpoint(checkpoint: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        time=checkpoint.get("checkpoint_time"),
        codes=codes(checkpoint.get("primary_status")),
        message=text(checkpoint.get("message")),
        location=location(
            name=checkpoint.get("location"),
            city=checkpoint.get("city"),
            state=checkpoint.get("state"),
            postal_code=checkpoint.get("postal_code"),
            country=first(
                checkpoint.get("country_iso3"), checkpoint.get("country_alpha3"), checkpoint.get("country_name")
            ),
        ),
        sequence=_sequence(checkpoint.get("order_number")),
        raw=checkpoint,
    )


def read(body: dict[str, Any]) -> Iterator[Tracker]:
    tracking = _tracking(body)
    checkpoints = [as_dict(item) for item in as_list(tracking.get("checkpoints"))]
    handlers = [text(item.get("handler")) for item in checkpoints if text(item.get("handler"))]
    order = text(tracking.get("platform_order_number"))
    yield Tracker(
        tracking_number=text(tracking.get("tracking_number")),
        carrier=text(tracking.get("courier_name")) or (handlers[-1] if handlers else ""),
        codes=codes(tracking.get("status")),
        checkpoints=[_checkpoint(item) for item in checkpoints],
        references=[(ReferenceKind.ORDER, order)] if order else [],
        raw=without(tracking, "checkpoints"),
    )


ADAPTER = Adapter("easyship", STATUSES, matches, read)
looks_like = ADAPTER.looks_like
parse = ADAPTER.parse
