"""Aggregator tracking webhooks -> canonical carrier events (no database)."""

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from apps.ingest.parsers import aggregators
from apps.ingest.parsers.aggregators.tracking import read_time
from apps.ingest.parsers.base import ParseContext, ParseError
from apps.timeline.events import EventKind

K = EventKind
DOCUMENTS = Path(__file__).parent / "documents" / "json"
CONTEXT = ParseContext(partner="AGG", time_zone="Europe/Paris", received_at=datetime(2026, 11, 22, tzinfo=UTC))


def body(name: str) -> bytes:
    return (DOCUMENTS / name).read_bytes()


def parse(name: str, context: ParseContext = CONTEXT):
    return aggregators.parse(body(name), context)


def kinds(document) -> list[str]:
    return [event.kind.value for event in document.events]


@pytest.mark.parametrize(
    ("name", "aggregator"),
    [
        ("easypost_tracker_updated.json", "easypost"),
        ("easypost_trackers_batch.json", "easypost"),
        ("shipengine_track.json", "shipengine"),
        ("aftership_tracking_update.json", "aftership"),
        ("aftership_exception.json", "aftership"),
        ("shippo_track_updated.json", "shippo"),
        ("shippo_failure_batch.json", "shippo"),
        ("sendcloud_parcel_status_changed.json", "sendcloud"),
        ("sendcloud_unknown_status.json", "sendcloud"),
        ("easyship_checkpoints_created.json", "easyship"),
        ("easyship_status_changed_v1.json", "easyship"),
        ("karrio_tracker_updated.json", "karrio"),
        ("karrio_tracker_bare.json", "karrio"),
        ("karrio_tracking_response.json", "karrio"),
    ],
)
def test_detect_names_exactly_one_aggregator(name, aggregator):
    assert aggregators.detect(body(name)) == aggregator
    assert aggregators.ADAPTERS[aggregator].looks_like(body(name))
    others = [adapter for key, adapter in aggregators.ADAPTERS.items() if key != aggregator]
    assert not any(adapter.looks_like(body(name)) for adapter in others)


@pytest.mark.parametrize(
    "raw",
    [b"", b"ISA*00*", b"not json", b"[]", b"{}", body("canonical_events.json"), body("generic_feed.json")],
)
def test_detect_ignores_other_shapes(raw):
    assert aggregators.detect(raw) is None
    assert not aggregators.looks_like(raw)


def test_registry_lists_every_adapter():
    assert set(aggregators.ADAPTERS) == {
        "easypost",
        "shipengine",
        "aftership",
        "shippo",
        "sendcloud",
        "easyship",
        "karrio",
    }


def test_easypost_checkpoints_in_time_order_with_eta():
    document = parse("easypost_tracker_updated.json")
    assert kinds(document) == [
        "shipment.tracking_assigned",
        "shipment.in_transit",
        "shipment.out_for_delivery",
        "shipment.delivered",
        "shipment.eta_updated",
    ]
    delivered = document.events[3]
    assert delivered.occurred_at == datetime(2026, 11, 21, 21, 47, tzinfo=UTC)
    assert delivered.references[0].value == "9400100000000000123456"
    assert delivered.attributes["carrier"] == "USPS"
    assert delivered.location.city == "Austin"
    assert delivered.location.postal_code == "78701"
    assert json.loads(delivered.raw)["message"] == "Delivered, Front Door/Porch"
    assert document.events[0].location is None  # nulls everywhere: no location at all
    assert document.events[-1].estimated_delivery_at == datetime(2026, 11, 21, 20, tzinfo=UTC)
    assert all(event.source.partner is None for event in document.events)


def test_easypost_batch_unknown_status_and_local_estimate():
    document = parse("easypost_trackers_batch.json")
    assert kinds(document) == ["shipment.status_unmapped", "shipment.eta_updated", "shipment.delayed"]
    assert document.unmapped_codes == ["unknown"]
    eta = document.events[1]
    # separate local date and time fields, no zone: the partner's zone, and the event says so
    assert eta.estimated_delivery_at.isoformat() == "2026-11-24T17:00:00+01:00"
    assert eta.attributes["time_zone_assumed"] is True
    returned = document.events[2]
    assert returned.attributes["milestone"] == "returned"
    assert returned.attributes["reason"] == "Returned to shipper: address unknown"
    assert returned.occurred_at.isoformat() == "2026-11-20T09:15:00+01:00"


def test_ids_are_deterministic_per_partner_and_content():
    first = parse("aftership_tracking_update.json")
    again = parse("aftership_tracking_update.json")
    other_partner = parse("aftership_tracking_update.json", ParseContext(partner="OTHER", time_zone="Europe/Paris"))
    ids = [event.event_id for event in first.events]
    assert ids == [event.event_id for event in again.events]
    assert len(set(ids)) == len(ids)
    assert set(ids).isdisjoint(event.event_id for event in other_partner.events)


def test_new_estimate_is_a_new_eta_event_and_same_estimate_a_duplicate():
    payload = json.loads(body("aftership_tracking_update.json"))
    before = aggregators.parse(json.dumps(payload).encode(), CONTEXT)
    payload["msg"]["updated_at"] = "2026-11-20T18:00:00+00:00"
    unchanged = aggregators.parse(json.dumps(payload).encode(), CONTEXT)
    payload["msg"]["courier_estimated_delivery_date"]["estimated_delivery_date"] = "2026-11-23"
    changed = aggregators.parse(json.dumps(payload).encode(), CONTEXT)

    def eta_ids(document):
        return [event.event_id for event in document.events if event.kind == K.SHIPMENT_ETA_UPDATED]

    assert eta_ids(before) == eta_ids(unchanged)
    assert eta_ids(before) != eta_ids(changed)


def test_aftership_attempt_with_naive_checkpoint_and_order_reference():
    document = parse("aftership_tracking_update.json")
    assert kinds(document) == [
        "shipment.tracking_assigned",
        "shipment.in_transit",
        "shipment.delivery_attempted",
        "shipment.eta_updated",
    ]
    in_transit = document.events[1]
    assert in_transit.attributes["time_zone_assumed"] is True
    assert in_transit.occurred_at.isoformat() == "2026-11-19T06:40:00+01:00"
    assert "time_zone_assumed" not in document.events[2].attributes
    assert [(ref.kind.value, ref.value) for ref in document.events[2].references] == [
        ("tracking", "JD014600006281190001"),
        ("order", "SO-1001"),
    ]


def test_aftership_refused_subtag_and_unmapped_tag():
    document = parse("aftership_exception.json")
    assert kinds(document) == ["shipment.refused", "shipment.status_unmapped"]
    assert document.unmapped_codes == ["Shipwrecked_001"]
    assert document.events[1].attributes["status_code"] == "Shipwrecked_001"


def test_channel_override_maps_an_unknown_code():
    context = ParseContext(
        partner="AGG", time_zone="Europe/Paris", mapping={"status_codes": {"Shipwrecked": "damaged"}}
    )
    document = parse("aftership_exception.json", context)
    assert kinds(document) == ["shipment.refused", "shipment.damaged"]
    assert document.unmapped_codes == []


def test_channel_override_to_an_event_kind_and_bad_override():
    context = ParseContext(mapping={"status_codes": {"AttemptFail": "shipment.delayed"}})
    document = parse("aftership_tracking_update.json", context)
    assert "shipment.delayed" in kinds(document)
    with pytest.raises(ParseError, match="neither a milestone"):
        parse("aftership_tracking_update.json", ParseContext(mapping={"status_codes": {"x": "teleported"}}))


def test_shipengine_detail_codes_carrier_local_time_and_statusless_event():
    document = parse("shipengine_track.json")
    assert kinds(document) == ["shipment.picked_up", "shipment.out_for_delivery", "shipment.eta_updated"]
    out = document.events[1]
    assert out.occurred_at.isoformat() == "2026-11-20T08:05:00+01:00"
    assert out.attributes["time_zone_assumed"] is True
    assert document.events[0].location.latitude is not None
    assert any("carry no status" in warning for warning in document.warnings)


def test_shippo_substatus_refines_status():
    document = parse("shippo_track_updated.json")
    assert kinds(document) == [
        "shipment.tracking_assigned",
        "shipment.in_transit",
        "shipment.delivery_attempted",
        "shipment.eta_updated",
    ]
    assert document.events[0].location is None


def test_shippo_batch_unix_time_empty_history_and_unknown():
    document = parse("shippo_failure_batch.json")
    assert kinds(document) == ["shipment.damaged", "shipment.status_unmapped"]
    assert document.events[0].occurred_at == datetime.fromtimestamp(1795600000, tz=UTC)
    assert document.unmapped_codes == ["UNKNOWN"]


def test_sendcloud_millisecond_timestamp_and_order_number():
    document = parse("sendcloud_parcel_status_changed.json")
    [event] = document.events
    assert event.kind == K.SHIPMENT_DELIVERED
    assert event.occurred_at == datetime.fromtimestamp(1795344300, tz=UTC)
    assert event.attributes["carrier"] == "colissimo"
    assert [ref.value for ref in event.references] == ["3SABCD0123456789", "SO-3001"]


def test_sendcloud_unknown_status_id_is_unmapped():
    document = parse("sendcloud_unknown_status.json")
    assert kinds(document) == ["shipment.status_unmapped"]
    assert document.unmapped_codes == ["1337"]


def test_easyship_checkpoints_out_of_order():
    document = parse("easyship_checkpoints_created.json")
    assert kinds(document) == ["shipment.in_transit", "shipment.in_transit", "shipment.out_for_delivery"]
    times = [event.occurred_at for event in document.events]
    assert times == sorted(times)
    assert document.events[-1].location.country == "GBR"
    assert document.events[-1].attributes["carrier"] == "Colissimo"


def test_easyship_empty_checkpoints_object_uses_received_time():
    document = parse("easyship_status_changed_v1.json")
    [event] = document.events
    assert event.kind == K.SHIPMENT_DELIVERY_ATTEMPTED
    assert event.occurred_at == CONTEXT.received_at
    without_time = parse("easyship_status_changed_v1.json", ParseContext())
    assert without_time.events == []
    assert "has no time" in without_time.warnings[0]


def test_karrio_separate_date_and_time_and_summary_on_latest_checkpoint():
    document = parse("karrio_tracker_updated.json")
    assert kinds(document) == ["shipment.picked_up", "shipment.delivered", "shipment.eta_updated"]
    delivered = document.events[1]
    assert delivered.occurred_at.isoformat() == "2026-11-20T14:12:00+01:00"
    assert delivered.attributes["time_zone_assumed"] is True
    assert document.events[2].estimated_delivery_at.isoformat() == "2026-11-20T00:00:00+01:00"


def test_karrio_tracker_as_the_tracking_api_returns_it():
    """The tracker alone, not wrapped in a webhook event, and without ``object_type``."""
    document = parse("karrio_tracker_bare.json")

    assert kinds(document) == ["shipment.in_transit", "shipment.out_for_delivery", "shipment.eta_updated"]
    assert {(ref.kind.value, ref.value) for event in document.events for ref in event.references} == {
        ("tracking", "1Z4V8E760412985531")
    }
    out_for_delivery = document.events[1]
    assert out_for_delivery.occurred_at.isoformat() == "2026-12-06T07:55:00+01:00"
    assert out_for_delivery.attributes["carrier"] == "ups"
    assert out_for_delivery.location.name == "LYON, FR"
    assert document.events[2].estimated_delivery_at.isoformat() == "2026-12-08T00:00:00+01:00"
    assert document.warnings == [
        "tracker 1Z4V8E760412985531: 1 checkpoint(s) carry no status; only the summary status was used for them"
    ]


def test_karrio_tracking_response_with_its_messages():
    document = parse("karrio_tracking_response.json")

    assert kinds(document) == ["shipment.picked_up", "shipment.delivered"]
    assert document.events[1].references[0].value == "5843017296"
    assert document.events[1].attributes["carrier"] == "dhl_express"


@pytest.mark.parametrize(
    "tracker",
    [
        {"tracking_number": "1Z1", "carrier_name": "ups"},  # no carrier_id
        {"tracking_number": "1Z1", "carrier_name": "ups", "carrier_id": ""},
        {"tracking_number": "1Z1", "carrier_name": "ups", "carrier_id": "ups-1", "object_type": "shipment"},
        {"tracking": {"tracking_number": "1Z1", "object_type": "tracker"}},  # no messages: not the API's shape
    ],
    ids=["no-carrier-id", "empty-carrier-id", "other-object-type", "tracking-without-messages"],
)
def test_karrio_bare_shapes_that_are_not_a_tracker(tracker):
    raw = json.dumps(tracker).encode()

    assert aggregators.detect(raw) is None
    with pytest.raises(ParseError, match="not a karrio tracking webhook"):
        aggregators.ADAPTERS["karrio"].parse(raw, CONTEXT)


def test_bad_checkpoint_time_is_a_warning_not_a_failure():
    payload = json.loads(body("aftership_tracking_update.json"))
    payload["msg"]["checkpoints"][0]["checkpoint_time"] = "2026-13-45T99:00:00"
    document = aggregators.parse(json.dumps(payload).encode(), CONTEXT)
    assert "shipment.delivery_attempted" in kinds(document)  # from the summary status
    assert any("'2026-13-45T99:00:00' is not a date" in warning for warning in document.warnings)


def test_unreadable_bodies_raise_precise_parse_errors():
    with pytest.raises(ParseError, match=r"line 2, column \d+: not valid JSON"):
        aggregators.ADAPTERS["aftership"].parse(b'{"msg":\n  {"tracking_number": }', CONTEXT)
    with pytest.raises(ParseError, match="not a shippo tracking webhook"):
        aggregators.ADAPTERS["shippo"].parse(body("aftership_exception.json"), CONTEXT)
    with pytest.raises(ParseError, match="known aggregator"):
        aggregators.parse(b'{"hello": "world"}', CONTEXT)
    with pytest.raises(ParseError, match="unknown aggregator"):
        aggregators.parse(b"{}", ParseContext(mapping={"aggregator": "pigeon"}))


def test_tracker_without_tracking_number_is_skipped_with_a_warning():
    payload = [
        json.loads(body("sendcloud_parcel_status_changed.json")),
        {"action": "parcel_status_changed", "timestamp": 1795345200, "parcel": {"tracking_number": "", "status": {}}},
    ]
    document = aggregators.parse(json.dumps(payload).encode(), CONTEXT)
    assert len(document.events) == 1
    assert "without a usable tracking number" in document.warnings[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T14:03:00Z", "2026-11-20T14:03:00+00:00"),
        ("2026-11-20T14:03:00.000+05:30", "2026-11-20T14:03:00+05:30"),
        ("2026-11-20 14:03", "2026-11-20T14:03:00+01:00"),
        (1795352400, "2026-11-22T14:00:00+01:00"),
        (1795352400000, "2026-11-22T14:00:00+01:00"),
        ("1795352400", "2026-11-22T14:00:00+01:00"),
        (("2026-11-20", "08:00"), "2026-11-20T08:00:00+01:00"),
        (("2026-11-20", None), "2026-11-20T00:00:00+01:00"),
    ],
)
def test_read_time_forms(value, expected):
    assert read_time(value, ZoneInfo("Europe/Paris")).at.isoformat() == expected
