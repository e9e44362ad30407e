"""AfterShip: the tracking webhook ``{"event", "event_id", "ts", "msg": {tracking}}``.

``msg`` carries ``tracking_number``, ``slug`` (the carrier), ``tag``/``subtag``, the estimates
and ``checkpoints[]`` (``checkpoint_time`` is the local time of the scan, usually with an offset).

| tag                 | milestone            | canonical kind              |
|---------------------|----------------------|-----------------------------|
| Pending             | pre_transit          | shipment.tracking_assigned  |
| InfoReceived        | pre_transit          | shipment.tracking_assigned  |
| InTransit           | in_transit           | shipment.in_transit         |
| OutForDelivery      | out_for_delivery     | shipment.out_for_delivery   |
| AvailableForPickup  | available_for_pickup | shipment.out_for_delivery   |
| AttemptFail         | attempted            | shipment.delivery_attempted |
| Delivered           | delivered            | shipment.delivered          |
| Exception           | exception            | shipment.delayed            |
| Expired             | expired              | shipment.delayed            |
| subtag Exception_003 (customer refused delivery) | refused | shipment.refused      |

Subtags are tried before tags, so a channel can map any subtag (``InTransit_002`` ...).
The estimate: courier's, else AfterShip's, else the custom one, else the older ``expected_delivery``.
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
        "Pending": M.PRE_TRANSIT,
        "InfoReceived": M.PRE_TRANSIT,
        "InTransit": M.IN_TRANSIT,
        "OutForDelivery": M.OUT_FOR_DELIVERY,
        "AvailableForPickup": M.AVAILABLE_FOR_PICKUP,
        "AttemptFail": M.ATTEMPTED,
        "Delivered": M.DELIVERED,
        "Exception": M.EXCEPTION,
        "Expired": M.EXPIRED,
        "Exception_003": M.REFUSED,
    }
)
ESTIMATES = ("courier_estimated_delivery_date", "aftership_estimated_delivery_date", "custom_estimated_delivery_date")


def matches(body: dict[str, Any]) -> bool:
    msg = as_dict(body.get("msg"))
    return bool(text(msg.get("tracking_number"))) and ("tag" in msg or "checkpoints" in msg)


def _estimate(msg: dict[str, Any]) -> Any:
    return first(
        *(as_dict(msg.get(name)).get("estimated_delivery_date") for name in ESTIMATES), msg.get("expected_delivery")
    )


def _checkpoint(checkpoint: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        time=checkpoint.get("checkpoint_time"),
        codes=codes(checkpoint.get("subtag"), checkpoint.get("tag")),
        message=text(checkpoint.get("message")),
        location=location(
            name=checkpoint.get("location"),
            city=checkpoint.get("city"),
            state=checkpoint.get("state"),
            postal_code=checkpoint.get("zip"),
            country=first(checkpoint.get("country_region"), checkpoint.get("country_iso3")),
        ),
        raw=checkpoint,
    )


def read(body: dict[str, Any]) -> Iterator[Tracker]:
    msg = as_dict(body.get("msg"))
    order = text(msg.get("order_number"))
    yield Tracker(
        tracking_number=text(msg.get("tracking_number")),
        carrier=text(msg.get("slug")),
        codes=codes(msg.get("subtag"), msg.get("tag")),
        message=text(msg.get("subtag_message")),
        updated_at=msg.get("updated_at"),
        estimated_delivery=_estimate(msg),
        checkpoints=[_checkpoint(as_dict(item)) for item in as_list(msg.get("checkpoints"))],
        references=[(ReferenceKind.ORDER, order)] if order else [],
        raw=without(msg, "checkpoints"),
    )


ADAPTER = Adapter("aftership", STATUSES, matches, read)
looks_like = ADAPTER.looks_like
parse = ADAPTER.parse
