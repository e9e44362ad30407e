"""The path of one inbound message: its raw bytes made readable, the events they parse into, what
they changed on the timeline, the exception cases around it and the acknowledgments sent back.

Cases are related to the message by subject and time only: a case on an order the message
touched, opened or closed after the message was processed, may or may not be its consequence.
"""

import csv
import io
import json
import re
from dataclasses import dataclass, field
from itertools import islice

from django.db.models import Q

from apps.exceptions.models import ExceptionCase, SubjectType
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.ingest.parsers import ParsedDocument
from apps.ingest.services import REPLAYABLE, message_preview
from apps.timeline.events import CanonicalEvent
from apps.timeline.models import Milestone, MilestoneReport, Order, ParkedEvent

MAX_BODY_BYTES = 1_000_000
MAX_SEGMENTS = 5_000
MAX_CSV_ROWS = 500
MAX_EVENTS = 500
MAX_REPARSE_BYTES = 5 * 2**20
MAX_MILESTONES = 500
MAX_CASES = 200
X12_ISA_ELEMENTS = 16
CSV_DELIMITERS = (",", ";", "\t", "|")
BOM = "\ufeff"
LINE_BREAKS = "\r\n"
# EDIFACT syntax level B without UNA: IS1 components, IS3 elements, IS4 segments, no release.
EDIFACT_LEVEL_B = ("\x1f", "\x1d", "", "\x1c")
EDIFACT_DEFAULT = (":", "+", "?", "'")


# --- the raw message, made readable --------------------------------------------------------------


@dataclass(frozen=True)
class Element:
    label: str  # "BSN02", or "DTM01.2" for a component of an EDIFACT composite
    value: str


@dataclass(frozen=True)
class RawSegment:
    number: int
    tag: str
    elements: tuple[Element, ...]


@dataclass(frozen=True)
class Segmented:
    segments: list[RawSegment]
    delimiters: str  # described for people, e.g. "element '*', component '>', segment '~'"


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    more: int  # rows left out


@dataclass
class RawView:
    """How a body is shown: ``layout`` is "segments", "json", "table" or "text"."""

    layout: str
    text: str = ""
    segmented: Segmented | None = None
    table: Table | None = None
    notes: list[str] = field(default_factory=list)


def decode(data: bytes) -> str:
    """UTF-8 when it is UTF-8 (a character cut by the display cap is dropped), otherwise latin-1."""
    try:
        return data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8").removeprefix(BOM)
        return data.decode("latin-1")


def _shown(char: str) -> str:
    return {"\n": "line break", "\r": "carriage return"}.get(char, repr(char))


def _skip_line_breaks(text: str, index: int) -> int:
    while index < len(text) and text[index] in LINE_BREAKS:
        index += 1
    return index


def x12_delimiters(text: str) -> tuple[str, str, str] | None:
    """(element, component, segment) separators read from the ISA; None when there is no ISA.

    The element separator follows "ISA"; the component separator (ISA16) follows the sixteenth
    element separator; the segment terminator comes next, or a line break when only that follows.
    """
    if not text.startswith("ISA") or len(text) < 4 or text[3].isalnum() or text[3].isspace():
        return None
    element, index = text[3], 3
    for _ in range(X12_ISA_ELEMENTS - 1):
        index = text.find(element, index + 1)
        if index == -1:
            return None
    component_at = _skip_line_breaks(text, index + 1)
    after = _skip_line_breaks(text, component_at + 1)
    if after >= len(text):
        return None
    if after > component_at + 1 and text[after].isalpha():
        return element, text[component_at], "\n"
    return element, text[component_at], text[after]


def x12_segments(text: str) -> Segmented | None:
    """An X12 document split into segments, each element labelled by its position (``BSN02``)."""
    text = text.lstrip(BOM + " \t" + LINE_BREAKS)
    delimiters = x12_delimiters(text)
    if delimiters is None:
        return None
    element, component, terminator = delimiters
    # Line breaks are layout unless they are the terminator (wrapped at 80 columns, one per line).
    unwrapped = text.replace("\r", "").replace("\n", "")
    pieces = text.splitlines() if terminator == "\n" else unwrapped.split(terminator)
    segments = []
    for number, piece in enumerate((p.strip(" \t") for p in pieces if p.strip(" \t")), start=1):
        tag, *values = piece.split(element)
        tag = tag.strip()
        labelled = (Element(f"{tag}{position:02d}", value) for position, value in enumerate(values, start=1))
        segments.append(RawSegment(number, tag, tuple(e for e in labelled if e.value.strip())))
    described = f"element {_shown(element)}, component {_shown(component)}, segment {_shown(terminator)}"
    return Segmented(segments, described)


def _split_released(text: str, separator: str, release: str) -> list[str]:
    """Split on ``separator`` except where the release character escapes it; escapes are kept."""
    parts, start, index = [], 0, 0
    while index < len(text):
        if release and text[index] == release:
            index += 2
            continue
        if text[index] == separator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def _unreleased(text: str, release: str) -> str:
    return re.sub(re.escape(release) + "(.)", r"\1", text, flags=re.DOTALL) if release else text


def _edifact_delimiters(text: str) -> tuple[tuple[str, str, str, str], str] | None:
    """((component, element, release, terminator), the text after the UNA), or None."""
    if text.startswith("UNA"):
        advice = text[3:9]
        if len(advice) < 6:
            return None
        component, element, _decimal, release, _reserved, terminator = advice
        return (component, element, "" if release == " " else release, terminator), text[9:]
    if text.startswith("UNB"):
        return (EDIFACT_LEVEL_B if text[3:4] == "\x1d" else EDIFACT_DEFAULT), text
    return None


def edifact_segments(text: str) -> Segmented | None:
    """An EDIFACT interchange split into segments, honouring the UNA and the release character.

    Elements are labelled by position (``STS01``); the components of a composite element by
    position too (``DTM01.2``). Values are shown released: ``?+`` reads as ``+``.
    """
    found = _edifact_delimiters(text.lstrip(BOM + " \t" + LINE_BREAKS))
    if found is None:
        return None
    (component, element, release, terminator), rest = found
    for line_break in LINE_BREAKS:
        if line_break not in (component, element, terminator):
            rest = rest.replace(line_break, "")
    segments = []
    raw_segments = (s.strip(" \t") for s in _split_released(rest, terminator, release))
    for number, raw in enumerate((s for s in raw_segments if s), start=1):
        tag, *values = _split_released(raw, element, release)
        elements: list[Element] = []
        for position, value in enumerate(values, start=1):
            parts = [_unreleased(part, release) for part in _split_released(value, component, release)]
            label = f"{_unreleased(tag, release)}{position:02d}"
            if len(parts) == 1:
                elements.append(Element(label, parts[0]))
            else:
                elements += [Element(f"{label}.{n}", part) for n, part in enumerate(parts, start=1) if part]
        tag = _unreleased(tag, release).strip()
        segments.append(RawSegment(number, tag, tuple(e for e in elements if e.value.strip())))
    described = (
        f"component {_shown(component)}, element {_shown(element)}, "
        f"release {_shown(release) if release else 'none'}, segment {_shown(terminator)}"
    )
    return Segmented(segments, described)


def pretty_json(text: str) -> str | None:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return None


def csv_table(text: str, *, delimiter: str | None = None, limit: int = MAX_CSV_ROWS) -> Table | None:
    """The header and the first ``limit`` rows; the delimiter is the most frequent in the header."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = delimiter or max(CSV_DELIMITERS, key=first.count)
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        header = next(reader, [])
        rows = list(islice(reader, limit))
        more = sum(1 for _ in reader)
    except csv.Error:
        return None
    return Table(header, rows, more) if header else None


SEGMENTERS = {"x12": x12_segments, "edifact": edifact_segments}


def _segment_view(text: str, fmt: str) -> RawView | None:
    """Segments in the named format; for a format not found yet, whichever envelope reads."""
    readers = [SEGMENTERS[fmt]] if fmt in SEGMENTERS else list(SEGMENTERS.values())
    segmented = next((found for reader in readers if (found := reader(text))), None)
    if segmented is None:
        return None
    view = RawView(layout="segments", segmented=segmented)
    if len(segmented.segments) > MAX_SEGMENTS:
        view.notes.append(f"Showing the first {MAX_SEGMENTS:,} of {len(segmented.segments):,} segments.")
        view.segmented = Segmented(segmented.segments[:MAX_SEGMENTS], segmented.delimiters)
    return view


def raw_view(body: bytes, fmt: str, *, csv_delimiter: str | None = None) -> RawView:
    """X12 and EDIFACT as segments, CSV as a table, JSON indented, anything else as text."""
    truncated = len(body) > MAX_BODY_BYTES
    text = decode(body[:MAX_BODY_BYTES])
    view = None
    if fmt in ("x12", "edifact", "auto", ""):
        view = _segment_view(text, fmt)
    elif fmt == "csv" and (table := csv_table(text, delimiter=csv_delimiter)):
        view = RawView(layout="table", table=table)
        if table.more:
            view.notes.append(f"Showing the first {len(table.rows):,} rows; {table.more:,} more not shown.")
    if view is None and not truncated and (pretty := pretty_json(text)) is not None:
        view = RawView(layout="json", text=pretty)
    view = view or RawView(layout="text", text=text)
    if truncated:
        view.notes.insert(0, f"The message is {len(body):,} bytes; showing the first {MAX_BODY_BYTES:,}.")
    return view


# --- the events it parses into -------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedEvents:
    events: list[CanonicalEvent] = field(default_factory=list)
    more: int = 0
    error: str = ""


def _reparse(message: InboundMessage) -> tuple[ParsedDocument | None, str]:
    """Parse the stored bytes again, with the channel and time processing used; nothing is stored."""
    preview = message_preview(
        body=bytes(message.body),
        format=message.format or "auto",
        partner=message.partner,
        channel=message.channel,
        received_at=message.received_at,
    )
    return preview.document, preview.error


def parsed_events(message: InboundMessage) -> ParsedEvents:
    if message.size > MAX_REPARSE_BYTES:
        return ParsedEvents(error=f"Not parsed again here: the message is larger than {MAX_REPARSE_BYTES:,} bytes.")
    document, error = _reparse(message)
    if document is None:
        return ParsedEvents(error=error)
    events = document.events
    return ParsedEvents(events=events[:MAX_EVENTS], more=max(len(events) - MAX_EVENTS, 0))


# --- what it changed, and what happened around it -------------------------------------------------


@dataclass(frozen=True)
class AppliedMilestone:
    milestone: Milestone
    orders: list[Order]
    first_source: bool  # False: another source reported it first, this message also did


@dataclass(frozen=True)
class RelatedCase:
    case: ExceptionCase
    about_message: bool
    opened_after: bool
    closed_after: bool


@dataclass(frozen=True)
class AcknowledgmentView:
    acknowledgment: OutboundMessage
    segmented: Segmented | None

    @classmethod
    def of(cls, acknowledgment: OutboundMessage) -> "AcknowledgmentView":
        segmenter = SEGMENTERS.get(acknowledgment.format)
        return cls(acknowledgment, segmenter(acknowledgment.body) if segmenter else None)


@dataclass
class MessageTrace:
    message: InboundMessage
    raw: RawView
    parsed: ParsedEvents
    milestones: list[AppliedMilestone]
    milestones_more: bool
    parked: list[ParkedEvent]
    cases: list[RelatedCase]
    acknowledgments: list[AcknowledgmentView]

    @property
    def replayable(self) -> bool:
        return self.message.status in REPLAYABLE


def _orders_of(milestone: Milestone) -> list[Order]:
    if milestone.order is not None:
        return [milestone.order]
    return list(milestone.shipment.orders.all()) if milestone.shipment is not None else []


def applied_milestones(message_id: int) -> tuple[list[AppliedMilestone], bool]:
    """The milestones this message put on the timeline, then those it reported again; and
    whether there were more than ``MAX_MILESTONES`` of either."""
    milestones = list(
        Milestone.objects.filter(source_message_id=message_id)
        .defer("payload", "lines")
        .select_related("order", "shipment")
        .prefetch_related("shipment__orders")
        .order_by("occurred_at", "event_id")[: MAX_MILESTONES + 1]
    )
    reports = list(
        MilestoneReport.objects.filter(source_message_id=message_id)
        .select_related("milestone__order", "milestone__shipment")
        .defer("milestone__payload", "milestone__lines")
        .prefetch_related("milestone__shipment__orders")
        .order_by("event_id")[: MAX_MILESTONES + 1]
    )
    more = len(milestones) > MAX_MILESTONES or len(reports) > MAX_MILESTONES
    rows = [AppliedMilestone(m, _orders_of(m), True) for m in milestones[:MAX_MILESTONES]]
    rows += [AppliedMilestone(r.milestone, _orders_of(r.milestone), False) for r in reports[:MAX_MILESTONES]]
    return rows, more


def related_cases(message: InboundMessage, milestones: list[AppliedMilestone]) -> list[RelatedCase]:
    """Cases about the message, and cases on the orders and shipments its milestones touched."""
    order_ids = {order.pk for row in milestones for order in row.orders}
    shipment_ids = {row.milestone.shipment_id for row in milestones if row.milestone.shipment_id}
    about = Q(subject_type=SubjectType.MESSAGE, subject_id=message.pk)
    cases = (
        ExceptionCase.objects.filter(about | Q(order_id__in=order_ids) | Q(shipment_id__in=shipment_ids))
        .select_related("rule", "order", "shipment")
        .order_by("-opened_at", "-id")[:MAX_CASES]
    )
    done = message.processed_at
    return [
        RelatedCase(
            case=case,
            about_message=case.subject_type == SubjectType.MESSAGE and case.subject_id == message.pk,
            opened_after=bool(done and case.opened_at >= done),
            closed_after=bool(done and case.resolved_at and case.resolved_at >= done),
        )
        for case in cases
    ]


def message_trace(message_id: int) -> MessageTrace | None:
    """Everything about one inbound message in a fixed number of queries, or None if unknown."""
    message = (
        InboundMessage.objects.select_related("partner", "channel")
        .prefetch_related("partner__channels")
        .filter(pk=message_id)
        .first()
    )
    if message is None:
        return None
    csv_options = (message.channel.mapping_overrides or {}).get("csv") if message.channel else None
    delimiter = csv_options.get("delimiter") if isinstance(csv_options, dict) else None
    milestones, more = applied_milestones(message.pk)
    acknowledgments = message.acknowledgments.order_by("position", "id")
    return MessageTrace(
        message=message,
        raw=raw_view(bytes(message.body), message.format, csv_delimiter=delimiter),
        parsed=parsed_events(message),
        milestones=milestones,
        milestones_more=more,
        parked=list(ParkedEvent.objects.filter(payload__source__message=message.pk).order_by("occurred_at")),
        cases=related_cases(message, milestones),
        acknowledgments=[AcknowledgmentView.of(ack) for ack in acknowledgments],
    )
