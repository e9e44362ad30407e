"""EasyPost: ``tracker.updated`` / ``tracker.created`` Events whose ``result`` is a Tracker.

Also reads a bare Tracker and ``{"trackers": [...]}`` (several trackers in one body).

| EasyPost status        | milestone             | canonical kind               |
|------------------------|-----------------------|------------------------------|
| pre_transit            | pre_transit           | shipment.tracking_assigned   |
| in_transit             | in_transit            | shipment.in_transit          |
| out_for_delivery       | out_for_delivery      | shipment.out_for_delivery    |
| available_for_pickup   | available_for_pickup  | shipment.out_for_delivery    |
| delivered              | delivered             | shipment.delivered           |
| failure                | exception             | shipment.delayed             |
| return_to_sender       | returned              | shipment.delayed             |
| cancelled              | cancelled             | shipment.delayed             |
| unknown, error         | —                     | shipment.status_unmapped     |

``status_detail`` is tried first, so a channel can map details finer than the status.
The estimate is ``est_delivery_date``, else ``carrier_detail.est_delivery_date_local`` with
``est_delivery_time_local`` (separate date and time, local to the destination).
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
        "pre_transit": M.PRE_TRANSIT,
        "in_transit": M.IN_TRANSIT,
        "out_for_delivery": M.OUT_FOR_DELIVERY,
        "available_for_pickup": M.AVAILABLE_FOR_PICKUP,
        "delivered": M.DELIVERED,
        "failure": M.EXCEPTION,
        "return_to_sender": M.RETURNED,
        "cancelled": M.CANCELLED,
    }
)


def _trackers(body: dict[str, Any]) -> list[dict[str, Any]]:
    if body.get("object") == "Event":
        candidates = [as_dict(body.get("result"))]
    elif body.get("object") == "Tracker":
        candidates = [body]
    else:
        candidates = [as_dict(item) for item in as_list(body.get("trackers"))]
    return [tracker for tracker in candidates if tracker.get("object") == "Tracker"]


def matches(body: dict[str, Any]) -> bool:
    return bool(_trackers(body))


def _estimate(tracker: dict[str, Any]) -> Any:
    if text(tracker.get("est_delivery_date")):
        return tracker["est_delivery_date"]
    detail = as_dict(tracker.get("carrier_detail"))
    day = text(detail.get("est_delivery_date_local"))
    return (day, text(detail.get("est_delivery_time_local"))) if day else None


def _checkpoint(detail: dict[str, Any]) -> Checkpoint:
    place = as_dict(detail.get("tracking_location"))
    return Checkpoint(
        time=detail.get("datetime"),
        codes=codes(detail.get("status_detail"), detail.get("status")),
        message=text(detail.get("message")) or text(detail.get("description")),
        location=location(
            city=place.get("city"), state=place.get("state"), postal_code=place.get("zip"), country=place.get("country")
        ),
        raw=detail,
    )


def read(body: dict[str, Any]) -> Iterator[Tracker]:
    for tracker in _trackers(body):
        yield Tracker(
            tracking_number=text(tracker.get("tracking_code")),
            carrier=text(tracker.get("carrier")),
            codes=codes(tracker.get("status_detail"), tracker.get("status")),
            updated_at=tracker.get("updated_at"),
            estimated_delivery=_estimate(tracker),
            checkpoints=[_checkpoint(as_dict(detail)) for detail in as_list(tracker.get("tracking_details"))],
            raw=without(tracker, "tracking_details"),
        )


ADAPTER = Adapter("easypost", STATUSES, matches, read)
looks_like = ADAPTER.looks_like
parse = ADAPTER.parse
