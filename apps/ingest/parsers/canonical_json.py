"""Canonical JSON (DESIGN.md, schema version 1): one event, a list, or ``{"events": [...]}``.

Every field problem is reported at once, each naming its field (``events[2].occurred_at: ...``);
a body that is not JSON names the line and column. ``source`` is never read from the body.
"""

from typing import Any

from apps.ingest.parsers.aggregators.tracking import load_json, quiet_json
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError
from apps.timeline.events import EventKind, EventValidationError, parse_events

KINDS = frozenset(EventKind)


def _first_event(data: Any) -> Any:
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
    if isinstance(data, list):
        return data[0] if data else None
    return data


def looks_like(body: bytes) -> bool:
    """Our own shape: the (first) event has a known ``kind`` and an ``occurred_at``."""
    event = _first_event(quiet_json(body))
    return isinstance(event, dict) and event.get("kind") in KINDS and "occurred_at" in event


def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    data = load_json(body)
    try:
        events = parse_events(data)
    except EventValidationError as exc:
        raise ParseError("; ".join(exc.problems)) from exc
    return ParsedDocument(events=events, warnings=[] if events else ["the document holds no events"])
