"""Sendcloud: the ``parcel_status_changed`` webhook.

Body: ``{"action": "parcel_status_changed", "timestamp", "carrier_status_change_timestamp",
"parcel": {tracking_number, order_number, carrier: {code}, status: {id, message}, ...}}``.
The webhook carries the new status only: it becomes one checkpoint at
``carrier_status_change_timestamp`` (else ``timestamp``), unix milliseconds or seconds.
``order_number`` is the shop's order number and is added as an order reference.

| status id (message)                                      | milestone            | canonical kind              |
|----------------------------------------------------------|----------------------|-----------------------------|
| 1000 Ready to send, 1001 Being announced, 1 Announced,   | pre_transit          | shipment.tracking_assigned  |
| 13 Announced: not collected                              |                      |                             |
| 22 Shipment picked up by driver                          | picked_up            | shipment.picked_up          |
| 3 En route to sorting center, 5 Sorted, 7 Being sorted,  | in_transit           | shipment.in_transit         |
| 91 Parcel en route                                       |                      |                             |
| 92 Driver en route                                       | out_for_delivery     | shipment.out_for_delivery   |
| 12 Awaiting customer pickup                              | available_for_pickup | shipment.out_for_delivery   |
| 8 Delivery attempt failed                                | attempted            | shipment.delivery_attempted |
| 11 Delivered, 93 Shipment collected by customer          | delivered            | shipment.delivered          |
| 4 Delivery delayed, 6 Not sorted, 15 Error collecting,   | exception            | shipment.delayed            |
| 80 Unable to deliver, 1002 Announcement failed           |                      |                             |
| 1999 Cancellation requested, 2000 Cancelled,             | cancelled            | shipment.delayed            |
| 2001 Submitting cancellation request                     |                      |                             |
| 1337 Unknown status, 999 No label, others                | —                    | shipment.status_unmapped    |
"""

from collections.abc import Iterator
from typing import Any

from apps.ingest.parsers.aggregators.tracking import (
    Adapter,
    Checkpoint,
    Milestone,
    Tracker,
    as_dict,
    codes,
    first,
    status_table,
    text,
)
from apps.timeline.events import ReferenceKind

M = Milestone
STATUSES = status_table(
    {
        "1000": M.PRE_TRANSIT,
        "1001": M.PRE_TRANSIT,
        "1": M.PRE_TRANSIT,
        "13": M.PRE_TRANSIT,
        "22": M.PICKED_UP,
        "3": M.IN_TRANSIT,
        "5": M.IN_TRANSIT,
        "7": M.IN_TRANSIT,
        "91": M.IN_TRANSIT,
        "92": M.OUT_FOR_DELIVERY,
        "12": M.AVAILABLE_FOR_PICKUP,
        "8": M.ATTEMPTED,
        "11": M.DELIVERED,
        "93": M.DELIVERED,
        "4": M.EXCEPTION,
        "6": M.EXCEPTION,
        "15": M.EXCEPTION,
        "80": M.EXCEPTION,
        "1002": M.EXCEPTION,
        "1999": M.CANCELLED,
        "2000": M.CANCELLED,
        "2001": M.CANCELLED,
    }
)


def matches(body: dict[str, Any]) -> bool:
    return text(body.get("action")) == "parcel_status_changed" and isinstance(body.get("parcel"), dict)


def read(body: dict[str, Any]) -> Iterator[Tracker]:
    parcel = as_dict(body.get("parcel"))
    status = as_dict(parcel.get("status"))
    status_codes = codes(status.get("id"))
    order = text(parcel.get("order_number"))
    yield Tracker(
        tracking_number=text(parcel.get("tracking_number")),
        carrier=text(as_dict(parcel.get("carrier")).get("code")),
        checkpoints=[
            Checkpoint(
                time=first(body.get("carrier_status_change_timestamp"), body.get("timestamp")),
                codes=status_codes,
                message=text(status.get("message")),
                raw=body,
            )
        ],
        references=[(ReferenceKind.ORDER, order)] if order else [],
    )


ADAPTER = Adapter("sendcloud", STATUSES, matches, read)
looks_like = ADAPTER.looks_like
parse = ADAPTER.parse
