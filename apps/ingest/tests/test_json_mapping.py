"""Generic JSON tracking feeds mapped by channel paths (no database)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from apps.ingest.parsers import json_mapping
from apps.ingest.parsers.base import ParseContext, ParseError
from apps.timeline.events import EventKind

K = EventKind
BODY = (Path(__file__).parent / "documents" / "json" / "generic_feed.json").read_bytes()
MAPPING = {
    "items": "result.shipments",
    "tracking_number": "awb",
    "status": "state",
    "occurred_at": ["when.date", "when.time"],
    "message": "text",
    "carrier": "courier.code",
    "estimated_delivery": "eta",
    "location": {"city": "place.town", "country": "place.cc"},
    "references": {"order": "order"},
    "status_codes": {"Zugestellt": "delivered"},
}


def context(mapping: dict | None = None) -> ParseContext:
    return ParseContext(partner="DPD-AGG", time_zone="Europe/Berlin", mapping={"json": mapping or MAPPING})


def test_items_paths_statuses_and_unmapped():
    document = json_mapping.parse(BODY, context())
    assert [event.kind for event in document.events] == [
        K.SHIPMENT_DELIVERED,
        K.SHIPMENT_IN_TRANSIT,
        K.SHIPMENT_ETA_UPDATED,
        K.SHIPMENT_STATUS_UNMAPPED,
    ]
    delivered = document.events[0]
    assert delivered.occurred_at.isoformat() == "2026-11-20T13:45:00+01:00"
    assert delivered.attributes["time_zone_assumed"] is True
    assert delivered.attributes["carrier"] == "dpd"
    assert delivered.location.city == "Berlin"
    assert [ref.value for ref in delivered.references] == ["CP123456789DE", "SO-5001"]
    assert document.events[2].estimated_delivery_at == datetime(2026, 11, 22, 17, tzinfo=UTC)
    assert document.unmapped_codes == ["Beim Zoll"]
    assert document.warnings == ["items[2]: no tracking number or status at the configured paths"]


def test_dig_with_list_indexes():
    data = {"events": [{"time": "a"}, {"time": "b"}]}
    assert json_mapping.dig(data, "events.1.time") == "b"
    assert json_mapping.dig(data, "events.-1.time") == "b"
    assert json_mapping.dig(data, "events.5.time") is None
    assert json_mapping.dig(data, "events.x") is None
    assert json_mapping.dig(data, "") is data


def test_root_list_and_single_object():
    mapping = {"tracking_number": "t", "status": "s", "occurred_at": "at"}
    listed = json_mapping.parse(b'[{"t": "A1", "s": "delivered", "at": 1795352400}]', context(mapping))
    single = json_mapping.parse(b'{"t": "A1", "s": "delivered", "at": 1795352400}', context(mapping))
    assert [e.event_id for e in listed.events] == [e.event_id for e in single.events]


def test_configuration_and_content_errors():
    with pytest.raises(ParseError, match="no JSON mapping"):
        json_mapping.parse(BODY, ParseContext())
    with pytest.raises(ParseError, match="no path for: status"):
        json_mapping.parse(BODY, context({"tracking_number": "awb"}))
    with pytest.raises(ParseError, match="no list of items at 'result.parcels'"):
        json_mapping.parse(BODY, context({**MAPPING, "items": "result.parcels"}))
    with pytest.raises(ParseError, match="no item could be read"):
        json_mapping.parse(b'{"result": {"shipments": [{"awb": "A"}]}}', context())


def test_never_auto_detected():
    assert not json_mapping.looks_like(BODY)
