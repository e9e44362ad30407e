"""Canonical JSON (DESIGN.md, schema version 1): one event, a list, or ``{"events": [...]}``.

Every field problem is reported at once, each naming its field (``events[2].occurred_at: ...``);
a body that is not JSON names the line and column. ``source`` is never read from the body.
"""

from typing import Any

from apps.ingest.parsers.aggregators.tracking import load_json, quiet_json
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError, capped, collection_paused
from apps.timeline.events import CanonicalEvent, EventKind, EventValidationError, parse_event, parse_events

KINDS = frozenset(EventKind)
# Problems named in the error of a document refused whole; the others are counted.
PROBLEMS_IN_ERROR = 20


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


@collection_paused()
def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    """A bad event is refused alone: the others are applied, and each of its problems is kept
    on the message (partially processed). A document with no good event is refused whole."""
    data = load_json(body)
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
    if not isinstance(data, list):
        return ParsedDocument(events=_all_or_nothing(data))
    # JSON writes a NUL in a text only as an escape (a raw one is refused by the decoder).
    nul_free = b"\\u0000" not in body
    events, problems = [], []
    for index, item in enumerate(data):
        try:
            events.append(parse_event(item, prefix=f"events[{index}]", nul_free=nul_free))
        except EventValidationError as exc:
            problems += exc.problems
    if problems and not events:
        raise ParseError("; ".join(capped(problems, PROBLEMS_IN_ERROR)))
    return ParsedDocument(
        events=events, unsupported=capped(problems), warnings=[] if data else ["the document holds no events"]
    )


def _all_or_nothing(data: Any) -> list[CanonicalEvent]:
    try:
        return parse_events(data)
    except EventValidationError as exc:
        raise ParseError("; ".join(capped(exc.problems, PROBLEMS_IN_ERROR))) from exc
