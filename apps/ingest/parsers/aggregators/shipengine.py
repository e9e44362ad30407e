"""ShipEngine (ShipStation API): the ``API_TRACK`` webhook (``TRACK_EVENT_V2`` on ShipStation v2).

Body: ``{"resource_url", "resource_type", "data": {tracking_number, carrier_code, status_code,
status_detail_code, estimated_delivery_date, events: [...]}}``. Event times: ``occurred_at``
(UTC), else ``carrier_occurred_at`` (the carrier's local time, no offset: the partner's zone is
assumed and the event says so).

| status_code | meaning                        | milestone            | canonical kind              |
|-------------|--------------------------------|----------------------|-----------------------------|
| NY          | not yet in system              | pre_transit          | shipment.tracking_assigned  |
| AC          | accepted by the carrier        | picked_up            | shipment.picked_up          |
| IT          | in transit                     | in_transit           | shipment.in_transit         |
| AT          | delivery attempt               | attempted            | shipment.delivery_attempted |
| SP          | delivered to a service point   | available_for_pickup | shipment.out_for_delivery   |
| DE          | delivered                      | delivered            | shipment.delivered          |
| EX          | exception                      | exception            | shipment.delayed            |
| UN          | unknown                        | —                    | shipment.status_unmapped    |

Detail codes tried first: SHIPMENT_CREATED and ELEC_ADVICE_RECD_BY_CARRIER (pre_transit),
PICKED_UP, IN_TRANSIT, OUT_FOR_DELIVERY, ATTEMPTED_DELIVERY(_FINAL) (attempted).
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
        "NY": M.PRE_TRANSIT,
        "AC": M.PICKED_UP,
        "IT": M.IN_TRANSIT,
        "AT": M.ATTEMPTED,
        "SP": M.AVAILABLE_FOR_PICKUP,
        "DE": M.DELIVERED,
        "EX": M.EXCEPTION,
        "SHIPMENT_CREATED": M.PRE_TRANSIT,
        "ELEC_ADVICE_RECD_BY_CARRIER": M.PRE_TRANSIT,
        "PICKED_UP": M.PICKED_UP,
        "IN_TRANSIT": M.IN_TRANSIT,
        "OUT_FOR_DELIVERY": M.OUT_FOR_DELIVERY,
        "ATTEMPTED_DELIVERY": M.ATTEMPTED,
        "ATTEMPTED_DELIVERY_FINAL": M.ATTEMPTED,
    }
)
RESOURCE_TYPES = frozenset({"API_TRACK", "TRACK_EVENT_V2"})


def matches(body: dict[str, Any]) -> bool:
    data = as_dict(body.get("data"))
    return text(body.get("resource_type")).upper() in RESOURCE_TYPES and bool(text(data.get("tracking_number")))


def _checkpoint(event: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        time=first(event.get("occurred_at"), event.get("carrier_occurred_at")),
        codes=codes(event.get("status_detail_code"), event.get("status_code")),
        message=text(event.get("description")) or text(event.get("status_description")),
        location=location(
            city=event.get("city_locality"),
            state=event.get("state_province"),
            postal_code=event.get("postal_code"),
            country=event.get("country_code"),
            latitude=event.get("latitude"),
            longitude=event.get("longitude"),
        ),
        raw=event,
    )


def read(body: dict[str, Any]) -> Iterator[Tracker]:
    data = as_dict(body.get("data"))
    yield Tracker(
        tracking_number=text(data.get("tracking_number")),
        carrier=text(data.get("carrier_code")),
        codes=codes(data.get("status_detail_code"), data.get("status_code")),
        message=text(data.get("exception_description")) or text(data.get("status_description")),
        estimated_delivery=data.get("estimated_delivery_date"),
        checkpoints=[_checkpoint(as_dict(event)) for event in as_list(data.get("events"))],
        raw=without(data, "events"),
    )


ADAPTER = Adapter("shipengine", STATUSES, matches, read)
looks_like = ADAPTER.looks_like
parse = ADAPTER.parse
