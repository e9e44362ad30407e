"""Shippo: the ``track_updated`` webhook ``{"event": "track_updated", "data": {Track}}``.

A Track has ``carrier``, ``tracking_number``, ``eta``, ``tracking_status`` (the current one) and
``tracking_history[]``; each status has ``status``, ``substatus.code``, ``status_details``,
``status_date`` (UTC) and ``location``. A bare Track (the tracks API) is read too.

| status       | milestone   | canonical kind              |
|--------------|-------------|-----------------------------|
| PRE_TRANSIT  | pre_transit | shipment.tracking_assigned  |
| TRANSIT      | in_transit  | shipment.in_transit         |
| DELIVERED    | delivered   | shipment.delivered          |
| RETURNED     | returned    | shipment.delayed            |
| FAILURE      | exception   | shipment.delayed            |
| UNKNOWN      | —           | shipment.status_unmapped    |

Substatus codes tried first: information_received (pre_transit), package_accepted (picked_up),
out_for_delivery, pickup_available (available_for_pickup), delivery_attempted (attempted),
package_damaged (damaged), return_to_sender (returned), delivered.
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

M = Milestone
STATUSES = status_table(
    {
        "PRE_TRANSIT": M.PRE_TRANSIT,
        "TRANSIT": M.IN_TRANSIT,
        "DELIVERED": M.DELIVERED,
        "RETURNED": M.RETURNED,
        "FAILURE": M.EXCEPTION,
        "information_received": M.PRE_TRANSIT,
        "package_accepted": M.PICKED_UP,
        "out_for_delivery": M.OUT_FOR_DELIVERY,
        "pickup_available": M.AVAILABLE_FOR_PICKUP,
        "delivery_attempted": M.ATTEMPTED,
        "package_damaged": M.DAMAGED,
        "return_to_sender": M.RETURNED,
    }
)


def _track(body: dict[str, Any]) -> dict[str, Any]:
    return as_dict(body.get("data")) if text(body.get("event")) == "track_updated" else body


def matches(body: dict[str, Any]) -> bool:
    track = _track(body)
    return bool(text(track.get("tracking_number"))) and isinstance(track.get("tracking_status"), dict)


def _codes(status: dict[str, Any]) -> tuple[str, ...]:
    return codes(as_dict(status.get("substatus")).get("code"), status.get("status"))


def _checkpoint(status: dict[str, Any]) -> Checkpoint:
    place = as_dict(status.get("location"))
    return Checkpoint(
        time=status.get("status_date"),
        codes=_codes(status),
        message=text(status.get("status_details")),
        location=location(
            city=place.get("city"), state=place.get("state"), postal_code=place.get("zip"), country=place.get("country")
        ),
        raw=status,
    )


def read(body: dict[str, Any]) -> Iterator[Tracker]:
    track = _track(body)
    current = as_dict(track.get("tracking_status"))
    yield Tracker(
        tracking_number=text(track.get("tracking_number")),
        carrier=text(track.get("carrier")),
        codes=_codes(current),
        message=text(current.get("status_details")),
        updated_at=first(current.get("status_date"), current.get("object_updated")),
        estimated_delivery=track.get("eta"),
        checkpoints=[_checkpoint(as_dict(item)) for item in as_list(track.get("tracking_history"))],
        raw=without(track, "tracking_history"),
    )


ADAPTER = Adapter("shippo", STATUSES, matches, read)
looks_like = ADAPTER.looks_like
parse = ADAPTER.parse
