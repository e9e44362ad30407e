"""Canonical JSON documents (no database)."""

import json
from pathlib import Path

import pytest

from apps.ingest.parsers import canonical_json
from apps.ingest.parsers.base import ParseContext, ParseError

DOCUMENTS = Path(__file__).parent / "documents" / "json"
EVENT = {
    "event_id": "wms-1",
    "kind": "order.picked",
    "occurred_at": "2026-11-20T14:03:00+01:00",
    "references": [{"kind": "order", "value": "SO-1"}],
}


def test_events_document():
    document = canonical_json.parse((DOCUMENTS / "canonical_events.json").read_bytes(), ParseContext())
    assert [event.event_id for event in document.events] == ["wms-7781-pick-1", "tms-1001-track"]
    assert document.warnings == []


@pytest.mark.parametrize("payload", [EVENT, [EVENT], {"events": [EVENT]}])
def test_one_event_a_list_or_events(payload):
    body = json.dumps(payload).encode()
    assert canonical_json.looks_like(body)
    [event] = canonical_json.parse(body, ParseContext()).events
    assert event.kind.value == "order.picked"


def test_source_in_the_body_is_ignored():
    body = json.dumps({**EVENT, "source": {"partner": "EVIL"}}).encode()
    [event] = canonical_json.parse(body, ParseContext(partner="WMS")).events
    assert event.source.partner is None


def test_a_bad_event_is_refused_alone_with_every_field_problem_named():
    second = {**EVENT, "event_id": "other"}
    bad = [EVENT, second, {**EVENT, "occurred_at": "2026-11-20T14:03:00", "kind": "order.teleported"}]
    document = canonical_json.parse(json.dumps({"events": bad}).encode(), ParseContext())
    assert [event.event_id for event in document.events] == [EVENT["event_id"], "other"]
    assert any(problem.startswith("events[2].kind:") for problem in document.unsupported)
    assert any(problem.startswith("events[2].occurred_at:") for problem in document.unsupported)


def test_a_document_of_bad_events_only_is_refused_whole():
    bad = [{**EVENT, "kind": "order.teleported"}, {**EVENT, "occurred_at": "yesterday"}]
    with pytest.raises(ParseError) as info:
        canonical_json.parse(json.dumps({"events": bad}).encode(), ParseContext())
    assert "events[0].kind:" in str(info.value)
    assert "events[1].occurred_at:" in str(info.value)


def test_bad_json_names_line_and_column():
    with pytest.raises(ParseError, match=r"line 3, column 5: not valid JSON"):
        canonical_json.parse(b'{\n  "events": [\n    ,\n  ]}', ParseContext())


def test_empty_list_is_a_warning():
    document = canonical_json.parse(b'{"events": []}', ParseContext())
    assert document.events == []
    assert document.warnings == ["the document holds no events"]


@pytest.mark.parametrize(
    "body",
    [b"", b"ISA*00", b'{"msg": {"tracking_number": "1"}}', b'{"kind": "weather", "occurred_at": "x"}', b"[]"],
)
def test_looks_like_rejects_other_shapes(body):
    assert not canonical_json.looks_like(body)
