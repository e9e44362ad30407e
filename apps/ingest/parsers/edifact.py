"""UN/EDIFACT interchanges (IFTSTA, DESADV, INVOIC, ORDERS, INVRPT) to canonical events.

pydifact reads the delimiters (:class:`~pydifact.control.Characters`). Each segment is split into
elements and components exactly as its ``Tokenizer`` and the token-to-element step of its
``Parser`` would, release characters included, but with ``str.split`` and regular expressions
instead of their loop over every character (most of the time of a parse); pydifact
still reads what they alone judge (a released line break is its syntax error).

The envelope is read here, segment by segment, because partners' files need more than
``Interchange.from_str`` gives: UNG/UNE groups, several interchanges in one file, counts and
control references that do not pair (warnings, never errors, while the content is intact), and
the raw text of every message. pydifact's ``Parser.parse`` also takes a released apostrophe
followed by ``UNA`` for a second service string advice, so it is not used on whole documents.

Layouts read: with or without ``UNA`` (defaults ``:+.? '``; syntax level B without UNA uses the
information separators IS1/IS3/IS4 and no release character), a UNA redefining every delimiter,
line breaks (LF or CRLF) after or inside segments, indentation, blank lines at the end, UNOA/UNOB/
UNOC/UNOW (UTF-8 first, then latin-1), a final UNZ without its terminator.

Event ids are a hash of the UNB sender and business content (document number and message
function; for statuses the reference, code, time, location and reason), never of control
references, so a resent interchange yields the same events.

Default status table (STS status event code, UN/ECE Recommendation 24 / data elements 9011 and
4405), overridable per channel with ``mapping["status_codes"] = {code: kind}``:

=========================  =====================================================================
shipment.picked_up         13 collection/pick-up completed, 27 despatch completed,
                           130 consignment received from shipper
shipment.in_transit        1 arrival completed (at a stop on the way), 16 crossed border,
                           24 departure completed, 31 en route, 40 arrival at port,
                           48 loaded onto a means of transport, 100 transshipment,
                           127 departed on a means of transport
shipment.out_for_delivery  113 delivery in progress
shipment.delivered         21 delivery completed, 22 delivery completed as per instruction
shipment.delivery_attempted  23 delivery not completed, 109/110 delivery impossible (with or
                           without a notice left)
shipment.delayed           20 delayed in the course of transportation, 25 departure delayed,
                           101 delayed in transit, 105 delivery postponed
shipment.damaged           3 arrival in defective condition, 18 damaged in transportation
shipment.refused           104 delivery refused, to be re-arranged; 106 delivery refused
=========================  =====================================================================

Any other code becomes ``shipment.status_unmapped`` with ``attributes.status_code`` and is listed
in ``ParsedDocument.unmapped_codes``. The STS status reason (9013) goes to ``attributes.reason``.

Reference qualifiers (RFF, data element 1153), overridable with
``mapping["reference_qualifiers"] = {qualifier: kind}``: BM bill of lading → bol; CN carrier's
reference → pro; ON buyer's order number → po (the customer's purchase order: it matches orders
created from ORDERS, whose number is both po and order, and ERP orders that carry the PO); VN
supplier's order number → order; IV invoice → invoice; SRN shipment reference → shipment; AAK
despatch advice and DQ delivery note → asn; AAS transport document and AAM waybill → tracking.
The IFTSTA consignment number (CNI) is a shipment reference, or the kind of a qualifier from that
table written in the component after it (``CNI+1+123456:BM``).

Dates (DTM, 2379 format): 101 YYMMDD, 102 CCYYMMDD, 201 YYMMDDHHMM, 203 CCYYMMDDHHMM, 204 with
seconds, 205 CCYYMMDDHHMM±HHMM, 303 CCYYMMDDHHMM and a zone (±HH[MM], Z/UTC/GMT or a zone name),
304 as 303 with seconds; no format code → guessed from the length. Times without a zone are in
``context.time_zone``. A date without a time is midnight, except delivery deadlines (requested or
estimated delivery) which are the end of that day.

INVRPT (inventory report): BGM 35 (inventory report) gives one ``inventory.snapshot`` per
warehouse, BGM 78 (inventory movement advice) one ``inventory.adjusted`` per warehouse and reason
for movement. Each LIN is an item (the PIA supplier article, else the LIN item id); after it each
QTY (C186: 6063 qualifier, 6060 quantity, 6411 unit) with the INV, LOC and DTM next to it is one
figure: 145 actual stock and 17 on hand are the quantity on hand, 21 ordered, 83 backorder, 20
unusable, 27 on hold, 66 committed, 12 despatched, 48 received, 61 returned and 65 destroyed are kept
in ``attributes.quantities`` (a channel adds qualifiers with ``mapping["quantity_qualifiers"]``).
In a movement advice, INV 4501 says the direction (1 out of inventory, 2 into it) and 4499 the
reason. The warehouse is the figure's LOC, else the NAD+WH (warehouse keeper) or NAD+GY (inventory
reporting party) of the header, else a header LOC, resolved as ``apps.ingest.parsers.inventory``
says (a channel's ``warehouses`` table, the sender's own ids, else the id as a partner code).
"""

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import pydantic
from pydifact.control import Characters
from pydifact.exceptions import EDISyntaxError
from pydifact.parser import Parser
from pydifact.tokenizer import Tokenizer

from apps.ingest.parsers import edifact_contrl as contrl
from apps.ingest.parsers import inventory
from apps.ingest.parsers.base import (
    ParseContext,
    ParsedDocument,
    ParseError,
    ReferenceBudget,
    ReferenceModels,
    capped,
    collection_paused,
    finished,
)
from apps.timeline.events import CanonicalEvent, EventKind, EventLine, EventLocation, ReferenceKind

K = EventKind
STATUS_KINDS: dict[str, EventKind] = {
    **dict.fromkeys(("13", "27", "130"), K.SHIPMENT_PICKED_UP),
    **dict.fromkeys(("1", "16", "24", "31", "40", "48", "100", "127"), K.SHIPMENT_IN_TRANSIT),
    "113": K.SHIPMENT_OUT_FOR_DELIVERY,
    **dict.fromkeys(("21", "22"), K.SHIPMENT_DELIVERED),
    **dict.fromkeys(("23", "109", "110"), K.SHIPMENT_DELIVERY_ATTEMPTED),
    **dict.fromkeys(("20", "25", "101", "105"), K.SHIPMENT_DELAYED),
    **dict.fromkeys(("3", "18"), K.SHIPMENT_DAMAGED),
    **dict.fromkeys(("104", "106"), K.SHIPMENT_REFUSED),
}

R = ReferenceKind
REFERENCE_QUALIFIERS: dict[str, ReferenceKind] = {
    "BM": R.BOL,
    "CN": R.PRO,
    "ON": R.PO,
    "VN": R.ORDER,
    "IV": R.INVOICE,
    "SRN": R.SHIPMENT,
    "AAK": R.ASN,
    "DQ": R.ASN,
    "AAS": R.TRACKING,
    "AAM": R.TRACKING,
}

# DTM qualifiers (2005) read by the mappers.
DOCUMENT_DATE = ("137",)
DESPATCH_DATE = ("11",)
ESTIMATED_DELIVERY = ("17", "132")
REQUESTED_DELIVERY = ("2", "63")
STATUS_DATE = ("334",)
# MOA qualifiers (5025) for an invoice total, best first: invoice amount, message total, total.
INVOICE_TOTALS = ("77", "86", "39")
# BGM document codes (1001) read as an invoice: commercial, corrected, tax invoice (no credit notes).
INVOICE_DOCUMENTS = frozenset({"380", "384", "388", ""})
CANCELLATION = "1"  # BGM message function code (1225)

DEFAULT_CHARACTERS = ":+.? '"
# Syntax level B without UNA: IS1 components, IS3 elements, IS4 segments, no release character.
LEVEL_B_CHARACTERS = "\x1f\x1d.\x00 \x1c"
NO_RELEASE = "\x00"
MAX_RAW = 100_000
MAX_REFERENCES = 200

_DATE_FORMATS = {"101": "%y%m%d", "102": "%Y%m%d", "201": "%y%m%d%H%M", "203": "%Y%m%d%H%M", "204": "%Y%m%d%H%M%S"}
_ZONED_FORMATS = {"205": 12, "303": 12, "304": 14}
_FORMAT_BY_LENGTH = {6: "101", 8: "102", 10: "201", 12: "203", 14: "204"}
# The length of a value each strptime pattern above reads when all its fields have two digits.
_PATTERN_LENGTHS = {"%y%m%d": 6, "%Y%m%d": 8, "%y%m%d%H%M": 10, "%Y%m%d%H%M": 12, "%Y%m%d%H%M%S": 14}
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})?$")
_TAG = re.compile(r"^[A-Z0-9]{3}$")
_LOCODE = re.compile(r"^[A-Z]{2}[A-Z2-9]{3}$")


# --------------------------------------------------------------------------------------------
# Public API


def looks_like(body: bytes) -> bool:
    """An EDIFACT interchange starts with UNA or UNB (after an optional BOM and whitespace)."""
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:3]
    return head in (b"UNA", b"UNB")


@collection_paused()
def sender_ids(body: bytes) -> list[tuple[str, str]]:
    """(qualifier or "UNB", id) of every UNB sender in the document; never raises."""
    try:
        characters, texts, _tail = _segment_texts(body)
        unbs = [_segment(0, text, characters, Parser()) for text in texts if text.startswith("UNB")]
        ids = [_sender(unb) for unb in unbs]
    except Exception:  # finding the partner must not fail on a document that parse() will reject
        return []
    return list(dict.fromkeys((qualifier or "UNB", sender) for qualifier, sender in ids if sender))


@collection_paused()
def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    """Read every message of every interchange, each interchange answered with a CONTRL;
    ParseError when the document cannot be read, carrying a CONTRL rejecting each interchange
    whose UNB could be read."""
    # The channel's settings are checked first: their errors are ours, not the sender's.
    zone, status_kinds, qualifiers = _zone(context.time_zone), _status_kinds(context), _qualifiers(context)
    try:
        return _parse(body, context, zone, status_kinds, qualifiers)
    except ParseError as exc:
        raise _rejected(body, context, str(exc)) from exc
    except EDISyntaxError as exc:
        raise _rejected(body, context, f"EDIFACT syntax error: {exc}") from exc
    except Exception as exc:  # bad input gets a clear error, never a crash
        raise _rejected(body, context, f"unreadable EDIFACT document: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Segments


@dataclass(frozen=True)
class Segment:
    """One segment: its 1-based position in the document, tag, elements and original text."""

    number: int
    tag: str
    elements: list[str | list[str]]
    raw: str

    def get(self, index: int, component: int = 0) -> str:
        """Component ``component`` of element ``index`` ("" when absent), stripped."""
        if index >= len(self.elements):
            return ""
        value = self.elements[index]
        parts = value if isinstance(value, list) else [value]
        return parts[component].strip() if component < len(parts) else ""

    def components(self, index: int) -> list[str]:
        if index >= len(self.elements):
            return []
        value = self.elements[index]
        return [part.strip() for part in (value if isinstance(value, list) else [value])]

    def describe(self) -> str:
        return f"segment {self.number} ({_shown(self.raw)})"


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:37] + "...")


@dataclass
class Segments:
    segments: list[Segment]
    characters: Characters
    warnings: list[str]


def _decode(body: bytes) -> str:
    """UTF-8 (UNOW, and UNOA/UNOB which are ASCII) when it decodes, else latin-1 (UNOC)."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("latin-1")


def _characters(text: str) -> tuple[Characters, str]:
    """The delimiters and the text after the service string advice."""
    if text.startswith("UNA"):
        advice = text[3:9]
        if len(advice) < 6:
            raise ParseError(f"UNA service string advice is truncated: expected 6 characters, found {advice!r}")
        _check_delimiters(advice)
        if advice[3] == " ":  # a space as release character means there is none
            advice = advice[:3] + NO_RELEASE + advice[4:]
        return Characters.from_str(advice), text[9:]
    if not text.startswith("UNB"):
        raise ParseError(f"not an EDIFACT interchange: expected UNA or UNB, found {text[:20]!r}")
    advice = LEVEL_B_CHARACTERS if text[3:4] == "\x1d" else DEFAULT_CHARACTERS
    return Characters.from_str(advice), text


def _check_delimiters(advice: str) -> None:
    component, element, _decimal, release, _reserved, terminator = advice
    used = [component, element, terminator] + ([release] if release != " " else [])
    if len(set(used)) != len(used):
        raise ParseError(
            f"UNA service string advice {advice!r} is unusable: component separator, element separator, "
            "release character and segment terminator must be different characters"
        )


def _without_line_breaks(text: str, characters: Characters) -> str:
    """Drop CR/LF that are not delimiters: after terminators, indentation, hard wraps at 80 columns."""
    delimiters = {characters.segment_terminator, characters.data_separator, characters.component_separator}
    for line_break in ("\r", "\n"):
        if line_break not in delimiters:
            text = text.replace(line_break, "")
    return text


def _split(text: str, characters: Characters) -> tuple[list[str], str]:
    """Terminated segment texts (a released terminator does not end a segment), and the rest."""
    release, terminator = characters.escape_character, characters.segment_terminator
    if release not in text:
        *parts, rest = text.split(terminator)
        return parts, rest
    parts, start, content = [], 0, _content(release, terminator)
    while True:
        end = content.match(text, start).end()
        if end >= len(text) or text[end] != terminator:  # the end, or a release character ending it
            return parts, text[start:]
        parts.append(text[start:end])
        start = end + 1


@lru_cache(maxsize=32)
def _content(release: str, delimiters: str) -> re.Pattern[str]:
    """Text up to the next of ``delimiters`` that is not released (a release character and any
    character after it, line breaks included, are text)."""
    release, delimiters = re.escape(release), re.escape(delimiters)
    return re.compile(f"(?:[^{release}{delimiters}]|{release}.)*+", re.DOTALL)


@lru_cache(maxsize=32)
def _released(release: str) -> re.Pattern[str]:
    return re.compile(f"{re.escape(release)}(.)", re.DOTALL)


def _segment_texts(body: bytes) -> tuple[Characters, list[str], str]:
    """The delimiters, the text of every terminated segment, and what follows the last terminator."""
    text = _decode(body).lstrip(" \t\r\n")
    if not text:
        raise ParseError("empty document: expected UNA or UNB")
    characters, rest = _characters(text)
    parts, tail = _split(_without_line_breaks(rest, characters), characters)
    return characters, [seg for seg in (part.strip(" \t") for part in parts) if seg], tail.strip(" \t")


def _read_segments(body: bytes) -> Segments:
    characters, texts, tail = _segment_texts(body)
    reader, warnings = Parser(), []
    segments = [_segment(number, raw, characters, reader) for number, raw in enumerate(texts, start=1)]
    if tail:
        last = _segment(len(segments) + 1, tail, characters, reader)
        if last.tag != "UNZ":
            raise ParseError(
                f"{last.describe()} has no segment terminator {characters.segment_terminator!r}: "
                "the document ends inside it (truncated?)"
            )
        warnings.append(f"{last.describe()} has no segment terminator")
        segments.append(last)
    return Segments(segments, characters, warnings)


def _segment(number: int, raw: str, characters: Characters, reader: Parser) -> Segment:
    release = characters.escape_character
    if (len(raw) - len(raw.rstrip(release))) % 2:
        raise ParseError(f"segment {number} ({_shown(raw)}): ends with the release character {release!r}")
    elements = _elements(raw, characters)
    if elements is None:
        tokens = Tokenizer().get_tokens(raw + characters.segment_terminator, characters)
        elements = next(iter(reader.convert_tokens_to_raw_segments(tokens)), [""])
    tag = elements[0]
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise ParseError(f"segment {number}: expected a three-character segment tag, found {_shown(raw)}")
    return Segment(number, tag, elements[1:], raw)


def _elements(raw: str, characters: Characters) -> list[str | list[str]] | None:
    """The segment's elements as pydifact's tokenizer and parser give them, read with ``str.split``
    and one regular expression instead of their character-by-character loop: a plain element is
    its text, a composite the list of its components (trailing empty components dropped, one left
    is the plain text), an empty one "", released characters kept without their release character.

    None for what only pydifact should judge: a released line break (its syntax error) or a
    terminator inside the text (never, from :func:`_split`).
    """
    release, terminator = characters.escape_character, characters.segment_terminator
    separator, component = characters.data_separator, characters.component_separator
    if not raw or terminator in raw and release not in raw:
        return None
    if release not in raw:
        return [_element(text.split(component)) if component in text else text for text in raw.split(separator)]
    if release + "\n" in raw:
        return None
    elements: list[str | list[str]] = []
    parts: list[str] = []  # the components of the element so far
    content, released, start = _content(release, separator + component + terminator), _released(release), 0
    while True:
        end = content.match(raw, start).end()
        text = raw[start:end]
        # Split around each released character, keeping it and dropping its release character.
        parts.append("".join(released.split(text)) if release in text else text)
        if end == len(raw):
            elements.append(_element(parts))
            return elements
        found = raw[end]
        if found not in (separator, component):  # a terminator, or a release character ending the text
            return None
        if found == separator:
            elements.append(_element(parts))
            parts = []
        start = end + 1


def _element(components: list[str]) -> str | list[str]:
    """An element from its components: trailing empty ones dropped; "" or the text when one is left."""
    while components and not components[-1]:
        components.pop()
    if len(components) > 1:
        return components
    return components[0] if components else ""


# --------------------------------------------------------------------------------------------
# Envelope


@dataclass
class Message:
    reference: str
    type: str
    header: Segment
    body: list[Segment]
    raw: str
    sender: str
    prepared_at: datetime | None
    decimal_mark: str
    report: contrl.MessageReport

    @property
    def label(self) -> str:
        return f"{self.type or 'message'} {self.reference}"


@dataclass
class _Open:
    """An open interchange or group: its header and the number of messages (and groups) seen."""

    header: Segment
    reference: str
    messages: int = 0
    groups: int = 0
    report: Any = None  # what its CONTRL says (None for a UNB with nothing to answer to)


@dataclass
class EnvelopeReader:
    """Walks UNB/UNG/UNH/UNT/UNE/UNZ; structure it cannot follow is a ParseError, counts are warnings."""

    characters: Characters
    time_zone: tzinfo
    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reports: list[contrl.InterchangeReport] = field(default_factory=list)
    interchange: _Open | None = None
    group: _Open | None = None
    message: list[Segment] | None = None

    def read(self, segments: Iterable[Segment]) -> None:
        handlers: dict[str, Callable[[Segment], None]] = {
            "UNB": self._unb,
            "UNG": self._ung,
            "UNH": self._unh,
            "UNT": self._unt,
            "UNE": self._une,
            "UNZ": self._unz,
        }
        for segment in segments:
            handlers.get(segment.tag, self._other)(segment)
        self._end()

    def _expect_no_message(self, segment: Segment) -> None:
        if self.message is not None:
            unh = self.message[0]
            raise ParseError(
                f"{segment.describe()}: expected UNT closing message {unh.get(0)!r} "
                f"(UNH at segment {unh.number}), found {segment.tag}"
            )

    def _unb(self, segment: Segment) -> None:
        self._expect_no_message(segment)
        if self.interchange:
            self._missing_unz(self.interchange)
        report = contrl.interchange_report(segment.elements)
        if report is None:
            self.warnings.append(f"{segment.describe()}: no control reference or sender, so no CONTRL answers it")
        else:
            self.reports.append(report)
        self.interchange = _Open(segment, segment.get(4), report=report)

    def _ung(self, segment: Segment) -> None:
        opened = self._inside_interchange(segment)
        self._expect_no_message(segment)
        if self.group:
            self._missing_une()
        group = contrl.GroupReport(segment.get(4), segment.components(1)[:2], segment.components(2)[:2])
        if opened.report:
            opened.report.groups.append(group)
        self.group = _Open(segment, segment.get(4), report=group)
        opened.groups += 1

    def _unh(self, segment: Segment) -> None:
        self._inside_interchange(segment)
        self._expect_no_message(segment)
        self.message = [segment]

    def _unt(self, segment: Segment) -> None:
        if self.message is None:
            raise ParseError(f"{segment.describe()}: found UNT without a UNH opening a message")
        unh, body = self.message[0], self.message[1:]
        self.message = None
        label = f"message {unh.get(0)}"
        report = contrl.MessageReport(unh.get(0), unh.components(1), self.group.reference if self.group else None)
        if not self._check_count(label, "UNT", segment.get(0), len(body) + 2, "segments"):
            report.error = contrl.Fault(contrl.COUNT_DOES_NOT_MATCH, "UNT", element=1)
        elif not self._check_reference(label, "UNT", segment.get(1), "UNH", unh.get(0)):
            report.error = contrl.Fault(contrl.REFERENCES_DO_NOT_MATCH, "UNT", element=2)
        opened = self._inside_interchange(segment)
        if opened.report:
            opened.report.messages.append(report)
        self.messages.append(self._message(opened.header, unh, body, segment, report))
        opened.messages += 1
        if self.group:
            self.group.messages += 1

    def _une(self, segment: Segment) -> None:
        self._inside_interchange(segment)
        self._expect_no_message(segment)
        if not self.group:
            self.warnings.append(f"{segment.describe()}: UNE without a UNG, ignored")
            return
        label, group = f"group {self.group.reference}", self.group.report
        if not self._check_count(label, "UNE", segment.get(0), self.group.messages, "messages"):
            group.error = group.error or contrl.Fault(contrl.COUNT_DOES_NOT_MATCH, "UNE", element=1)
        if not self._check_reference(label, "UNE", segment.get(1), "UNG", self.group.reference):
            group.error = group.error or contrl.Fault(contrl.REFERENCES_DO_NOT_MATCH, "UNE", element=2)
        self.group = None

    def _unz(self, segment: Segment) -> None:
        opened = self._inside_interchange(segment)
        self._expect_no_message(segment)
        if self.group:
            self._missing_une()
            self.group = None
        label = f"interchange {opened.reference}"
        counted, unit = (opened.groups, "groups") if opened.groups else (opened.messages, "messages")
        counts = self._check_count(label, "UNZ", segment.get(0), counted, unit)
        references = self._check_reference(label, "UNZ", segment.get(1), "UNB", opened.reference)
        if opened.report and not counts:
            opened.report.fail(contrl.Fault(contrl.COUNT_DOES_NOT_MATCH, "UNZ", element=1))
        elif opened.report and not references:
            opened.report.fail(contrl.Fault(contrl.REFERENCES_DO_NOT_MATCH, "UNZ", element=2))
        self._close(opened)
        self.interchange = None

    def _other(self, segment: Segment) -> None:
        if self.message is not None:
            self.message.append(segment)
            return
        self._inside_interchange(segment)
        self.warnings.append(f"{segment.describe()} is outside any message, ignored")

    def _inside_interchange(self, segment: Segment) -> _Open:
        if self.interchange is None:
            raise ParseError(f"{segment.describe()}: expected UNB opening an interchange, found {segment.tag}")
        return self.interchange

    def _end(self) -> None:
        if self.message is not None:
            unh = self.message[0]
            raise ParseError(
                f"document ends inside message {unh.get(0)!r} (UNH at segment {unh.number}): "
                "expected UNT, found end of document (truncated?)"
            )
        if self.group:
            self._missing_une()
        if self.interchange:
            self._missing_unz(self.interchange)
        if not self.messages:
            self.warnings.append("the interchange holds no message")

    def _missing_une(self) -> None:
        group = self.group
        if group is not None:
            self.warnings.append(f"group {group.reference}: no UNE trailer")
            group.report.error = group.report.error or contrl.Fault(contrl.MISSING, "UNE")

    def _missing_unz(self, opened: _Open) -> None:
        self.warnings.append(f"interchange {opened.reference}: no UNZ trailer (truncated?)")
        if opened.report:
            opened.report.fail(contrl.Fault(contrl.MISSING, "UNZ"))
        self._close(opened)

    def _close(self, opened: _Open) -> None:
        """An interchange without messages is rejected: there is nothing in it to acknowledge."""
        if opened.report and not opened.messages:
            opened.report.rejected = True
            opened.report.fail(contrl.Fault(contrl.LOWER_LEVEL_EMPTY))

    def _check_count(self, label: str, tag: str, stated: str, counted: int, unit: str) -> bool:
        if stated != str(counted) and not (stated.isdigit() and int(stated) == counted):
            self.warnings.append(f"{label}: {tag} says {stated or 'nothing'} {unit}, counted {counted}")
            return False
        return True

    def _check_reference(self, label: str, tag: str, stated: str, opener: str, expected: str) -> bool:
        if stated != expected:
            self.warnings.append(f"{label}: {tag} reference {stated!r} does not match {opener} reference {expected!r}")
            return False
        return True

    def _message(
        self, unb: Segment, unh: Segment, body: list[Segment], unt: Segment, report: contrl.MessageReport
    ) -> Message:
        terminator = self.characters.segment_terminator
        raw = "".join(f"{seg.raw}{terminator}\n" for seg in (unh, *body, unt))
        return Message(
            reference=unh.get(0),
            type=unh.get(1).upper(),
            header=unh,
            body=body,
            raw=raw[:MAX_RAW].strip(),
            sender=":".join(filter(None, _sender(unb))),
            prepared_at=_unb_time(unb, self.time_zone),
            decimal_mark=self.characters.decimal_point,
            report=report,
        )


def _sender(unb: Segment) -> tuple[str, str]:
    """(qualifier, id) of the UNB sender (S002: 0004 id, 0007 qualifier)."""
    return unb.get(1, 1), unb.get(1, 0)


def _unb_time(unb: Segment, zone: tzinfo) -> datetime | None:
    day, clock = unb.get(3, 0), unb.get(3, 1) or "0000"
    pattern = {6: "%y%m%d%H%M", 8: "%Y%m%d%H%M"}.get(len(day))
    try:
        return _strptime(day + clock, pattern).replace(tzinfo=zone) if pattern else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Reading values


@dataclass
class Reading:
    """What the mappers share for one message: the context, the message and where warnings go."""

    message: Message
    context: ParseContext
    zone: tzinfo
    warnings: list[str]
    status_kinds: dict[str, EventKind]
    qualifiers: dict[str, ReferenceKind]
    budget: ReferenceBudget
    reference_models: ReferenceModels = field(default_factory=ReferenceModels)  # shared by a document's messages
    unmapped: list[str] = field(default_factory=list)  # codes no table knows, as met

    def warn(self, text: str) -> None:
        self.warnings.append(f"{self.message.label}: {text}")

    def fault(self, segment: Segment, code: str, element: int | None = None, component: int | None = None) -> None:
        """Report an element in error in the message's CONTRL (positions as CONTRL counts them:
        UNH is segment 1, the tag element 0, components from 1)."""
        position = segment.number - self.message.header.number + 1
        self.message.report.add(contrl.Fault(code, segment.tag, position, element, component))

    @cached_property
    def document_date(self) -> datetime | None:
        """The document date (DTM+137), read once however many statuses fall back on it."""
        return find_date(self, self.message.body, DOCUMENT_DATE)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except Exception as exc:  # ZoneInfo raises ValueError, KeyError or its own error for bad names
        raise ParseError(f"time zone {name!r} of the channel is not a known IANA zone") from exc


def _parse_zone(text: str) -> tzinfo:
    if text.upper() in ("Z", "UT", "UTC", "GMT"):
        return UTC
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-offset if sign == "-" else offset)
    try:
        return ZoneInfo(text)
    except Exception as exc:  # ZoneInfo raises ValueError, KeyError or its own error for bad names
        raise ValueError(f"time zone {text!r} is not known") from exc


def date_time(value: str, fmt: str, zone: tzinfo, *, end_of_day: bool = False) -> datetime:
    """A DTM value in a 2379 format as an aware datetime; ValueError when it cannot be read."""
    fmt = fmt or _FORMAT_BY_LENGTH.get(len(value), "")
    if fmt in _ZONED_FORMATS:
        cut = _ZONED_FORMATS[fmt]
        local = value[:cut]
        if not local.isdigit():
            raise ValueError(f"{value!r} is not a {fmt} date")
        pattern = "%Y%m%d%H%M%S" if cut == 14 else "%Y%m%d%H%M"
        return _strptime(local, pattern).replace(tzinfo=_parse_zone(value[cut:]))
    if fmt not in _DATE_FORMATS:
        raise ValueError(f"date format {fmt or '(none)'} of {value!r} is not supported")
    if not value.isdigit():
        raise ValueError(f"{value!r} is not a {fmt} date")
    parsed = _strptime(value, _DATE_FORMATS[fmt]).replace(tzinfo=zone)
    if end_of_day and fmt in ("101", "102"):
        return parsed.replace(hour=23, minute=59, second=59)
    return parsed


def _strptime(value: str, pattern: str) -> datetime:
    """``datetime.strptime(value, pattern)`` for the digit patterns of 2379 dates, ten times faster.

    A value of ASCII digits whose every field has two digits (four for %Y) and makes a valid
    date and time is read by position: strptime reads each such field as those two digits too.
    Anything else goes to strptime, whose reading and error messages stay the reference.
    """
    if len(value) == _PATTERN_LENGTHS.get(pattern) and value.isascii() and value.isdigit():
        cut = 2 if pattern.startswith("%y") else 4
        year = int(value[:cut])
        if cut == 2:
            year += 2000 if year <= 68 else 1900  # as strptime reads %y
        try:
            return datetime(year, *(int(value[index : index + 2]) for index in range(cut, len(value), 2)))  # noqa: DTZ001 - the zone is added by the caller
        except ValueError:
            pass
    return datetime.strptime(value, pattern)  # noqa: DTZ007 - the zone is added by the caller


def find_date(
    reading: Reading, segments: Iterable[Segment], qualifiers: Iterable[str], *, end_of_day: bool = False
) -> datetime | None:
    """The first readable DTM among ``segments`` whose qualifier is in ``qualifiers`` (in that order)."""
    dtms = [seg for seg in segments if seg.tag == "DTM"]
    for qualifier in dict.fromkeys(qualifiers):
        for dtm in dtms:
            if dtm.get(0, 0) == qualifier:
                parsed = _read_dtm(reading, dtm, end_of_day=end_of_day)
                if parsed:
                    return parsed
    return None


def _read_dtm(reading: Reading, dtm: Segment, *, end_of_day: bool = False) -> datetime | None:
    try:
        return date_time(dtm.get(0, 1), dtm.get(0, 2), reading.zone, end_of_day=end_of_day)
    except (ValueError, KeyError, OverflowError) as exc:
        reading.warn(f"{dtm.describe()} ignored: {exc}")
        reading.fault(dtm, contrl.INVALID_VALUE, 1, 2)
        return None


def decimal_value(
    reading: Reading, value: str, what: str, at: tuple[Segment, int, int | None] | None = None
) -> Decimal | None:
    """A numeric value; the decimal mark may be the UNA one, a point or a comma (ISO 9735).
    ``at`` is where it was read (segment, element, component), reported when it is not a number."""
    if not value:
        return None
    try:
        parsed = Decimal(value.replace(reading.message.decimal_mark, ".").replace(",", "."))
    except InvalidOperation:
        parsed = None
    if parsed is None or not parsed.is_finite():
        reading.warn(f"{what} {value!r} is not a number, ignored")
        if at is not None:
            reading.fault(at[0], contrl.INVALID_TYPE_OF_CHARACTERS, at[1], at[2])
        return None
    return parsed


def references(reading: Reading, segments: Iterable[Segment]) -> list[tuple[ReferenceKind, str]]:
    """Typed references from RFF segments (C506: 1153 qualifier, 1154 value) the table knows."""
    found = []
    for rff in segments:
        if rff.tag == "RFF" and rff.get(0, 1):
            kind = reading.qualifiers.get(rff.get(0, 0).upper())
            if kind:
                found.append((kind, rff.get(0, 1)))
    return found


def _party(segments: Iterable[Segment], role: str) -> Segment | None:
    return next((seg for seg in segments if seg.tag == "NAD" and seg.get(0) == role), None)


def carrier(segments: list[Segment]) -> str | None:
    """TDT carrier (C040: 3127 id, 3128 name), else the NAD+CA party id or name."""
    return _transport_carrier(segments) or _party_carrier(segments)


def _transport_carrier(segments: list[Segment]) -> str | None:
    for tdt in (seg for seg in segments if seg.tag == "TDT"):
        found = tdt.get(4, 0) or tdt.get(4, 3)
        if found:
            return found
    return None


def _party_carrier(segments: list[Segment]) -> str | None:
    nad = _party(segments, "CA")
    return (nad.get(1, 0) or nad.get(3, 0)) if nad else None


def location(segments: Iterable[Segment]) -> EventLocation | None:
    """The first LOC (C517: 3225 code, 3224 name); a UN/LOCODE gives the country."""
    loc = next((seg for seg in segments if seg.tag == "LOC" and (seg.get(1, 0) or seg.get(1, 3))), None)
    if loc is None:
        return None
    code, name = loc.get(1, 0), loc.get(1, 3)
    country = code[:2] if _LOCODE.match(code) else None
    return EventLocation(name=(name or code)[:200], country=country)


def event_id(message: Message, *parts: object) -> str:
    key = "\x1f".join(str(part) for part in (message.sender, message.type, *parts))
    return f"edifact:{message.type.lower()}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def build_event(reading: Reading, refs: list[tuple[ReferenceKind, str]], **fields: Any) -> CanonicalEvent | None:
    """A validated event with the message's raw text, or a warning saying why it was skipped."""
    unique = _unique(refs)
    if len(unique) > MAX_REFERENCES:
        reading.warn(f"{len(unique)} references, only the first {MAX_REFERENCES} kept")
        unique = unique[:MAX_REFERENCES]
    if not unique:
        reading.warn(f"no reference to correlate a {fields['kind']} event, skipped")
        return None
    reading.budget.spend(len(unique))
    try:
        event = CanonicalEvent(references=reading.reference_models.of(unique), **fields)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'event'}: {err['msg']}" for err in exc.errors())
        reading.warn(f"{fields['kind']} event skipped: {problems}")
        return None
    # The message's text, cut at MAX_RAW, is shared by its events and set without validating it
    # again for each of them.
    return finished(event, raw=reading.message.raw)


def _unique(refs: list[tuple[ReferenceKind, str]]) -> list[tuple[ReferenceKind, str]]:
    """Without blanks and repeats, in the order found."""
    return list(dict.fromkeys((kind, value.strip()) for kind, value in refs if value.strip()))


def fallback_time(reading: Reading, dated: datetime | None) -> datetime | None:
    """A segment's own date, else the document date (DTM+137), else the UNB preparation time."""
    found = dated or reading.document_date or reading.message.prepared_at
    if found is None:
        reading.warn("no date in the message or its UNB, skipped")
    return found


# --------------------------------------------------------------------------------------------
# Lines (LIN groups)


@dataclass
class _LineDraft:
    lin: Segment
    ids: list[tuple[str, str]] = field(default_factory=list)
    quantity: Segment | None = None
    prices: list[Segment] = field(default_factory=list)
    order: str | None = None


def lines(reading: Reading, quantity_qualifier: str) -> list[EventLine]:
    """LIN groups: sku from PIA supplier article (SA), else the LIN item id, else the first PIA id."""
    drafts: list[_LineDraft] = []
    current: _LineDraft | None = None
    for seg in reading.message.body:
        if seg.tag == "UNS":  # the summary section: totals, no more lines
            break
        if seg.tag == "LIN":
            current = _LineDraft(seg, [(seg.get(2, 1), seg.get(2, 0))])
            drafts.append(current)
        elif seg.tag == "CPS":  # a new packaging level of a DESADV
            current = None
        elif current:
            _add_to_line(current, seg, quantity_qualifier)
    built = (_line(reading, draft, quantity_qualifier) for draft in drafts)
    return [line for line in built if line]


def _add_to_line(draft: _LineDraft, seg: Segment, quantity_qualifier: str) -> None:
    if seg.tag == "PIA":
        draft.ids += [(seg.get(index, 1), seg.get(index, 0)) for index in range(1, len(seg.elements))]
    elif seg.tag == "QTY" and seg.get(0, 0) == quantity_qualifier and draft.quantity is None:
        draft.quantity = seg
    elif seg.tag == "PRI":
        draft.prices.append(seg)
    elif seg.tag == "RFF" and seg.get(0, 0) == "ON" and seg.get(0, 1):
        draft.order = seg.get(0, 1)


def _sku(draft: _LineDraft) -> str:
    ids = [(kind.upper(), value) for kind, value in draft.ids if value]
    supplier = [value for kind, value in ids if kind == "SA"]
    return (supplier or [value for _kind, value in ids] or [""])[0]


def _line(reading: Reading, draft: _LineDraft, quantity_qualifier: str) -> EventLine | None:
    where = f"line {draft.lin.get(0) or '?'} ({draft.lin.describe()})"
    sku = _sku(draft)
    if not sku or draft.quantity is None:
        missing = "item id (LIN or PIA)" if not sku else f"QTY+{quantity_qualifier} quantity"
        reading.warn(f"{where} has no {missing}, skipped")
        return None
    quantity = decimal_value(reading, draft.quantity.get(0, 1), f"{where} quantity", (draft.quantity, 1, 2))
    if quantity is None:
        return None
    try:
        return EventLine(
            sku=sku,
            quantity=quantity,
            uom=draft.quantity.get(0, 2) or "EA",
            unit_price=_unit_price(reading, draft, where),
            line_number=draft.lin.get(0) or None,
            order=draft.order,
        )
    except pydantic.ValidationError as exc:
        reading.warn(f"{where} skipped: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        return None


def _unit_price(reading: Reading, draft: _LineDraft, where: str) -> Decimal | None:
    """PRI (C509: 5125 qualifier, 5118 price): the net price (AAA) first, else the first one."""
    ordered = sorted(draft.prices, key=lambda pri: pri.get(0, 0) != "AAA")
    if not ordered:
        return None
    return decimal_value(reading, ordered[0].get(0, 1), f"{where} price", (ordered[0], 1, 2))


# --------------------------------------------------------------------------------------------
# Message mappers


def _bgm(message: Message) -> tuple[str, str, str]:
    """BGM document code (C002 1001), number (C106 1004, or a plain element) and function (1225)."""
    bgm = next((seg for seg in message.body if seg.tag == "BGM"), None)
    if bgm is None:
        return "", "", ""
    return bgm.get(0, 0), bgm.get(1, 0), bgm.get(2, 0)


@dataclass
class _Consignment:
    """A CNI group: the CNI (None for statuses sent before any CNI), what precedes its first STS,
    and each status with the segments that follow it (RFF, DTM, LOC, FTX, TDT...)."""

    cni: Segment | None
    segments: list[Segment] = field(default_factory=list)
    statuses: list[list[Segment]] = field(default_factory=list)


def map_iftsta(reading: Reading) -> list[CanonicalEvent]:
    """One event per STS: refs from the message, its consignment (CNI) and the status itself.

    The message header is read once, not once per status: its references (at most the first
    MAX_REFERENCES: no event keeps more), its first location and its carrier.
    """
    header, consignments = _consignments(reading.message.body)
    header_refs = _unique(references(reading, header))[:MAX_REFERENCES]
    header_place, header_transport, header_party = location(header), _transport_carrier(header), _party_carrier(header)
    events = []
    for consignment in consignments:
        refs = _consignment_refs(reading, consignment.cni) + header_refs + references(reading, consignment.segments)
        own = consignment.segments
        around = _Around(
            location=header_place or location(own),
            carrier=header_transport or _transport_carrier(own) or header_party or _party_carrier(own),
        )
        for status in consignment.statuses:
            event = _status_event(reading, refs, around, status)
            if event:
                events.append(event)
    return events


@dataclass(frozen=True)
class _Around:
    """What a status takes from its message header and consignment when it lacks its own."""

    location: EventLocation | None
    carrier: str | None


def _consignments(body: list[Segment]) -> tuple[list[Segment], list[_Consignment]]:
    """Split an IFTSTA body into its header segments and its consignments."""
    header: list[Segment] = []
    consignments: list[_Consignment] = []
    for seg in body:
        if seg.tag == "CNI":
            consignments.append(_Consignment(seg))
        elif seg.tag == "STS":
            if not consignments:
                consignments.append(_Consignment(None))
            consignments[-1].statuses.append([seg])
        elif consignments and consignments[-1].statuses:
            consignments[-1].statuses[-1].append(seg)
        else:
            (consignments[-1].segments if consignments else header).append(seg)
    return header, consignments


def _consignment_refs(reading: Reading, cni: Segment | None) -> list[tuple[ReferenceKind, str]]:
    """CNI C503: 1004 consignment number; a known qualifier in the next component names its kind."""
    if cni is None or not cni.get(1, 0):
        return []
    kind = reading.qualifiers.get(cni.get(1, 1).upper(), ReferenceKind.SHIPMENT)
    return [(kind, cni.get(1, 0))]


def _status_event(
    reading: Reading, refs: list[tuple[ReferenceKind, str]], around: _Around, status: list[Segment]
) -> CanonicalEvent | None:
    sts = status[0]
    code = sts.get(1, 0)
    if not code:
        reading.warn(f"{sts.describe()} has no status code, skipped")
        return None
    occurred = _status_time(reading, status)
    if occurred is None:
        return None
    kind = reading.status_kinds.get(code, EventKind.SHIPMENT_STATUS_UNMAPPED)
    reason = sts.get(2, 0)
    found_at = location(status) or around.location
    place = found_at.name if found_at else ""
    attributes = {
        "status_code": code,
        "status_text": sts.get(1, 3),
        "reason": reason,
        "reason_text": sts.get(2, 3),
        "carrier": carrier(status) or around.carrier,
        "message_type": "IFTSTA",
    }
    all_refs = refs + references(reading, status)
    return build_event(
        reading,
        all_refs,
        event_id=event_id(reading.message, all_refs[0][1] if all_refs else "", code, occurred, place, reason),
        kind=kind,
        occurred_at=occurred,
        location=found_at,
        estimated_delivery_at=find_date(reading, status, ESTIMATED_DELIVERY, end_of_day=True),
        attributes={key: value for key, value in attributes.items() if value},
    )


def _status_time(reading: Reading, status: list[Segment]) -> datetime | None:
    """The status change date (DTM+334), else the first other non-estimate DTM of the status."""
    others = [seg.get(0, 0) for seg in status if seg.tag == "DTM" and seg.get(0, 0) not in ESTIMATED_DELIVERY]
    return fallback_time(reading, find_date(reading, status, (*STATUS_DATE, *others)))


def map_desadv(reading: Reading) -> list[CanonicalEvent]:
    """``shipment.manifested``: BGM number → asn (and shipment without an SRN), RFF, GIN SSCCs."""
    body = reading.message.body
    _code, number, function = _bgm(reading.message)
    refs = references(reading, body)
    if number:
        refs.insert(0, (ReferenceKind.ASN, number))
        if not any(kind == ReferenceKind.SHIPMENT for kind, _value in refs):
            refs.insert(0, (ReferenceKind.SHIPMENT, number))
    refs += [(ReferenceKind.CONTAINER, sscc) for sscc in _sscc(body)]
    occurred = fallback_time(reading, find_date(reading, body, DESPATCH_DATE))
    if occurred is None:
        return []
    attributes = {"carrier": carrier(body), "packaging": _packaging(reading, body), "message_type": "DESADV"}
    event = build_event(
        reading,
        refs,
        event_id=event_id(reading.message, number, function),
        kind=EventKind.SHIPMENT_MANIFESTED,
        occurred_at=occurred,
        lines=lines(reading, "12"),
        estimated_delivery_at=find_date(reading, body, ESTIMATED_DELIVERY, end_of_day=True),
        attributes={key: value for key, value in attributes.items() if value},
    )
    return [event] if event else []


def _sscc(body: list[Segment]) -> list[str]:
    """GIN+BJ (serial shipping container code): every identity number, ranges included."""
    return [
        value
        for gin in body
        if gin.tag == "GIN" and gin.get(0) == "BJ"
        for index in range(1, len(gin.elements))
        for value in gin.components(index)
        if value
    ]


def _packaging(reading: Reading, body: list[Segment]) -> list[dict[str, str]]:
    """PAC (7224 number of packages, C202 7065 package type) with its CPS hierarchy level."""
    level, found = "", []
    for seg in body:
        if seg.tag == "CPS":
            level = seg.get(0)
        elif seg.tag == "PAC" and seg.get(0):
            count = decimal_value(reading, seg.get(0), f"{seg.describe()} package count", (seg, 1, None))
            if count is not None:
                found.append({"level": level, "count": str(count), "type": seg.get(2, 0)})
    return found


def map_invoic(reading: Reading) -> list[CanonicalEvent]:
    """``invoice.generated``: BGM number → invoice, RFF refs, MOA total, CUX currency, LIN lines."""
    body = reading.message.body
    code, number, function = _bgm(reading.message)
    occurred = fallback_time(reading, find_date(reading, body, ("3", *DOCUMENT_DATE)))
    if occurred is None:
        return []
    amount, moa_currency = _total(reading, body)
    event = build_event(
        reading,
        [(ReferenceKind.INVOICE, number), *references(reading, body)],
        event_id=event_id(reading.message, number, function),
        kind=EventKind.INVOICE_GENERATED,
        occurred_at=occurred,
        lines=lines(reading, "47"),
        amount=amount,
        currency=_currency(reading, body) or moa_currency,
        attributes={key: value for key, value in {"document_code": code, "message_type": "INVOIC"}.items() if value},
    )
    return [event] if event else []


def _total(reading: Reading, body: list[Segment]) -> tuple[Decimal | None, str | None]:
    """MOA (C516: 5025 qualifier, 5004 amount, 6345 currency) by INVOICE_TOTALS preference."""
    moas = [seg for seg in body if seg.tag == "MOA"]
    for qualifier in INVOICE_TOTALS:
        for moa in moas:
            if moa.get(0, 0) == qualifier:
                amount = decimal_value(reading, moa.get(0, 1), f"{moa.describe()} amount", (moa, 1, 2))
                if amount is not None:
                    return amount, _iso_currency(moa.get(0, 2))
    return None, None


def _currency(reading: Reading, body: list[Segment]) -> str | None:
    """CUX+2 (reference currency; C504: 6347 usage, 6345 currency)."""
    for cux in (seg for seg in body if seg.tag == "CUX"):
        if cux.get(0, 0) in ("2", ""):
            found = _iso_currency(cux.get(0, 1))
            if found is None and cux.get(0, 1):
                reading.warn(f"{cux.describe()}: {cux.get(0, 1)!r} is not a currency code, ignored")
            return found
    return None


def _iso_currency(value: str) -> str | None:
    return value.upper() if len(value) == 3 and value.isalpha() else None


def map_orders(reading: Reading) -> list[CanonicalEvent]:
    """``order.created`` (``order.cancelled`` for message function 1): BGM number → po and order."""
    body = reading.message.body
    _code, number, function = _bgm(reading.message)
    occurred = fallback_time(reading, find_date(reading, body, DOCUMENT_DATE))
    if occurred is None:
        return []
    cancelled = function == CANCELLATION
    buyer = _party(body, "BY")
    attributes = {"message_type": "ORDERS", "buyer": _buyer(buyer) if buyer else None}
    promised = find_date(reading, body, REQUESTED_DELIVERY, end_of_day=True)
    event = build_event(
        reading,
        [(ReferenceKind.PO, number), (ReferenceKind.ORDER, number), *references(reading, body)],
        event_id=event_id(reading.message, number, function),
        kind=EventKind.ORDER_CANCELLED if cancelled else EventKind.ORDER_CREATED,
        occurred_at=occurred,
        lines=[] if cancelled else lines(reading, "21"),
        order={"promised_at": promised} if promised and not cancelled else None,
        attributes={key: value for key, value in attributes.items() if value},
    )
    return [event] if event else []


def _buyer(nad: Segment) -> dict[str, str]:
    """NAD+BY: C082 party id (3039) and agency (3055), C080 party name, city and country."""
    fields = {
        "id": nad.get(1, 0),
        "agency": nad.get(1, 2),
        "name": " ".join(filter(None, nad.components(3))) or " ".join(filter(None, nad.components(2))),
        "city": nad.get(5, 0),
        "postal_code": nad.get(7, 0),
        "country": nad.get(8, 0),
    }
    return {key: value for key, value in fields.items() if value}


INVRPT_SNAPSHOT, INVRPT_MOVEMENTS = "35", "78"
INVRPT_QUANTITIES = {
    "145": inventory.ON_HAND,
    "17": inventory.ON_HAND,
    "21": "on_order",
    "83": "backorder",
    "20": "unusable",
    "27": "on_hold",
    "66": "committed",
    "12": "despatched",
    "48": "received",
    "61": "returned",
    "65": "destroyed",
}
INVRPT_PARTIES = ("WH", "GY")  # NAD 3035: warehouse keeper, inventory reporting party
MOVEMENT_SIGNS = {"1": -1, "2": 1}  # INV 4501: movement out of, into inventory


@dataclass
class _Figure:
    """One QTY of an INVRPT item with the INV, LOC and DTM around it."""

    sku: str
    quantity: Segment | None = None
    inv: Segment | None = None
    place: str = ""


def map_invrpt(reading: Reading) -> list[CanonicalEvent]:
    """``inventory.snapshot`` (BGM 35) or ``inventory.adjusted`` (BGM 78) per warehouse."""
    body = reading.message.body
    _code, number, function = _bgm(reading.message)
    occurred = fallback_time(reading, reading.document_date)
    if occurred is None:
        return []
    table = inventory.quantity_table(INVRPT_QUANTITIES, reading.context.mapping, reading.warn)
    own = [reading.message.sender.rsplit(":", 1)[-1]] if reading.message.sender else []
    places = inventory.Warehouses(reading.context.mapping, reading.context.partner, own, reading.warn)
    header = []
    for seg in body:
        if seg.tag == "LIN":
            break
        header.append(seg)
    nad = next((found for role in INVRPT_PARTIES if (found := _party(header, role))), None)
    default = (nad.get(1, 0) if nad else "") or next((loc.get(1, 0) for loc in header if loc.tag == "LOC"), "")
    place = _nad_location(nad) if nad else None
    figures = _figures(reading, body)
    movements = _code == INVRPT_MOVEMENTS
    common = {"message_type": "INVRPT", "report": number}
    events = []
    if movements:
        grouped = _movements(reading, figures, places, default)
        for (code, reason), found in grouped.items():
            attributes = {**common, "warehouse": code, "reason_code": reason}
            at = place if code == places.code(default) else None
            events.append(_inventory_event(reading, K.INVENTORY_ADJUSTED, occurred, found, attributes, function, at))
        return [event for event in events if event]
    stocks: dict[tuple[str | None, str, str], inventory.Stock] = {}
    for figure in figures:
        qualifier = figure.quantity.get(0, 0)
        kind = table.get(qualifier.upper())
        if kind is None:
            reading.unmapped.append(f"QTY:{qualifier}")
            reading.warn(
                f"{figure.quantity.describe()}: quantity qualifier {qualifier!r} is not known, not read "
                "(a channel names it with quantity_qualifiers)"
            )
            continue
        quantity = decimal_value(
            reading, figure.quantity.get(0, 1), f"{figure.quantity.describe()} quantity", (figure.quantity, 1, 2)
        )
        if quantity is not None:
            uom = (figure.quantity.get(0, 2) or "EA")[:10]
            key = (places.code(figure.place or default), figure.sku, uom)
            stocks.setdefault(key, inventory.Stock(figure.sku, uom)).add(kind, quantity)
    for code in dict.fromkeys(where for where, _, _ in stocks):
        own_stocks = [stock for (where, _, _), stock in stocks.items() if where == code]
        lines = [
            (stock, EventLine(sku=stock.sku, quantity=figure[1], uom=stock.uom))
            for stock in own_stocks
            if (figure := stock.stock)
        ]
        without = [stock.sku for stock in own_stocks if not stock.stock]
        if without:
            reading.warn(
                f"warehouse {code or '(the sender)'}: {len(without)} item(s) without a stock quantity (QTY+145 or "
                f"QTY+17) leave their stock position as it was: {', '.join(map(repr, without[:5]))}"
            )
        if not lines:
            continue
        chunks = inventory.parts(lines)
        for index, chunk in enumerate(chunks, start=1):
            attributes = {
                **common,
                "warehouse": code,
                "quantities": inventory.quantities_attribute(stock for stock, _ in chunk),
                "part": f"{index}/{len(chunks)}" if len(chunks) > 1 else None,
            }
            found = [line for _, line in chunk]
            at = place if code == places.code(default) else None
            events.append(_inventory_event(reading, K.INVENTORY_SNAPSHOT, occurred, found, attributes, function, at))
    return [event for event in events if event]


def _nad_location(nad: Segment) -> EventLocation | None:
    """NAD C080 party name, 3164 city, 3251 postal code, 3207 country."""
    name = " ".join(filter(None, nad.components(3))) or " ".join(filter(None, nad.components(2)))
    fields = {"name": name[:200], "city": nad.get(5, 0)[:100], "postal_code": nad.get(7, 0)[:20]}
    fields["country"] = nad.get(8, 0)[:60]
    return EventLocation(**{key: value for key, value in fields.items() if value}) if any(fields.values()) else None


def _figures(reading: Reading, body: list[Segment]) -> list[_Figure]:
    """Every QTY after a LIN, with the INV before or after it and the first LOC after it."""
    figures: list[_Figure] = []
    draft: _LineDraft | None = None
    sku: str | None = None  # the item's SKU, read at its first QTY or INV ("" when it has none)
    current: _Figure | None = None
    for seg in body:
        if seg.tag == "UNS":
            break
        if seg.tag == "LIN":
            draft, sku, current = _LineDraft(seg, [(seg.get(2, 1), seg.get(2, 0))]), None, None
        elif draft is None:
            continue
        elif seg.tag == "PIA" and sku is None:
            _add_to_line(draft, seg, "")
        elif seg.tag in ("QTY", "INV"):
            if sku is None:
                sku = _sku(draft)[:100]
                if not sku:
                    reading.warn(f"line {draft.lin.get(0) or '?'} ({draft.lin.describe()}) has no item id, skipped")
            if not sku:
                continue
            slot = "quantity" if seg.tag == "QTY" else "inv"
            if current is None or getattr(current, slot) is not None:
                current = _Figure(sku)
                figures.append(current)
            setattr(current, slot, seg)
        elif seg.tag == "LOC" and current is not None and not current.place:
            current.place = seg.get(1, 0)
    return [figure for figure in figures if figure.quantity is not None]


def _movements(
    reading: Reading, figures: list[_Figure], places: inventory.Warehouses, default: str
) -> dict[tuple[str | None, str], list[EventLine]]:
    """Signed lines by (warehouse, reason for movement)."""
    grouped: dict[tuple[str | None, str], list[EventLine]] = {}
    for figure in figures:
        where = figure.quantity.describe()
        if figure.inv is None:
            reading.warn(f"{where}: no INV (movement direction) in a movement advice, not read")
            continue
        direction = figure.inv.get(0)
        sign = MOVEMENT_SIGNS.get(direction)
        if sign is None:
            reading.unmapped.append(f"INV:{direction}")
            reading.warn(
                f"{figure.inv.describe()}: movement direction {direction!r} is neither 1 (out) nor 2 (in), not read"
            )
            continue
        quantity = decimal_value(reading, figure.quantity.get(0, 1), f"{where} quantity", (figure.quantity, 1, 2))
        if quantity is None:
            continue
        line = EventLine(sku=figure.sku, quantity=sign * abs(quantity), uom=(figure.quantity.get(0, 2) or "EA")[:10])
        grouped.setdefault((places.code(figure.place or default), figure.inv.get(2)), []).append(line)
    return grouped


def _inventory_event(
    reading: Reading,
    kind: EventKind,
    occurred: datetime,
    found: list[EventLine],
    attributes: dict[str, Any],
    function: str,
    place: EventLocation | None = None,
) -> CanonicalEvent | None:
    """An inventory event (no references needed) whose id hashes its content."""
    attributes = {key: value for key, value in attributes.items() if value}
    content = [(line.sku, str(line.quantity), line.uom) for line in found]
    key = (kind.value, function, occurred.isoformat(), sorted(attributes.items(), key=str), content)
    try:
        event = CanonicalEvent(
            event_id=event_id(reading.message, hashlib.sha256(repr(key).encode()).hexdigest()),
            kind=kind,
            occurred_at=occurred,
            lines=found,
            location=place,
            attributes=attributes,
        )
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'event'}: {err['msg']}" for err in exc.errors())
        reading.warn(f"{kind} event skipped: {problems}")
        return None
    return finished(event, raw=reading.message.raw)


MAPPERS: dict[str, Callable[[Reading], list[CanonicalEvent]]] = {
    "IFTSTA": map_iftsta,
    "DESADV": map_desadv,
    "INVOIC": map_invoic,
    "ORDERS": map_orders,
    "INVRPT": map_invrpt,
}


# --------------------------------------------------------------------------------------------
# Document


def _status_kinds(context: ParseContext) -> dict[str, EventKind]:
    overrides = context.mapping.get("status_codes") or {}
    return {**STATUS_KINDS, **_checked(overrides, EventKind, "status_codes")}


def _qualifiers(context: ParseContext) -> dict[str, ReferenceKind]:
    overrides = context.mapping.get("reference_qualifiers") or {}
    return {
        **REFERENCE_QUALIFIERS,
        **{key.upper(): kind for key, kind in _checked(overrides, ReferenceKind, "reference_qualifiers").items()},
    }


def _checked(overrides: Any, enum: type, name: str) -> dict:
    if not isinstance(overrides, dict):
        raise ParseError(f"channel mapping {name} must be an object of code: kind, found {type(overrides).__name__}")
    checked = {}
    for code, kind in overrides.items():
        try:
            checked[str(code).strip()] = enum(kind)
        except ValueError as exc:
            raise ParseError(f"channel mapping {name}[{code!r}] = {kind!r} is not a known {enum.__name__}") from exc
    return checked


def _parse(
    body: bytes,
    context: ParseContext,
    zone: tzinfo,
    status_kinds: dict[str, EventKind],
    qualifiers: dict[str, ReferenceKind],
) -> ParsedDocument:
    read = _read_segments(body)
    envelope = EnvelopeReader(read.characters, zone)
    envelope.read(read.segments)
    document = ParsedDocument(warnings=read.warnings + envelope.warnings)
    budget, reference_models = ReferenceBudget(len(body)), ReferenceModels()
    for message in envelope.messages:
        mapper = MAPPERS.get(message.type)
        if mapper is None:
            document.unsupported.append(f"EDIFACT {message.type or '(untyped message)'} is not supported")
            message.report.rejected = True
            message.report.error = contrl.Fault(contrl.VALUE_NOT_SUPPORTED, "UNH", element=2, component=1)
            continue
        reading = Reading(message, context, zone, document.warnings, status_kinds, qualifiers, budget, reference_models)
        _map(reading, mapper, document)
    document.warnings = capped(document.warnings)
    document.unsupported = capped(list(dict.fromkeys(document.unsupported)))
    document.unmapped_codes = list(dict.fromkeys(document.unmapped_codes))
    document.acknowledgments = [contrl.acknowledgment(report, context) for report in envelope.reports if report.due]
    return document


def _unsupported(message: Message) -> tuple[str, int, int | None] | None:
    """Why a message of a handled type is still not read (cancellations, credit notes), with the
    BGM element and component that say so."""
    code, _number, function = _bgm(message)
    if function == CANCELLATION and message.type != "ORDERS":
        return f"EDIFACT {message.type} cancellation (BGM message function 1) is not supported", 3, None
    if message.type == "INVOIC" and code not in INVOICE_DOCUMENTS:
        return f"EDIFACT INVOIC document {code} is not supported (only invoices 380, 384 and 388)", 1, 1
    return None


def _map(reading: Reading, mapper: Callable[[Reading], list[CanonicalEvent]], document: ParsedDocument) -> None:
    """Events into ``document``; unsupported parts and unmapped codes as met (repeats removed at the end)."""
    unsupported = _unsupported(reading.message)
    if unsupported:
        why, element, component = unsupported
        document.unsupported.append(why)
        bgm = next(seg for seg in reading.message.body if seg.tag == "BGM")
        reading.fault(bgm, contrl.VALUE_NOT_SUPPORTED, element, component)
        reading.message.report.rejected = True
        return
    for event in mapper(reading):
        document.events.append(event)
        if event.kind == EventKind.SHIPMENT_STATUS_UNMAPPED:
            document.unmapped_codes.append(event.attributes["status_code"])
    document.unmapped_codes.extend(reading.unmapped)


# --------------------------------------------------------------------------------------------
# Rejections


def _rejected(body: bytes, context: ParseContext, reason: str) -> ParseError:
    """The error for a document that cannot be read, with a CONTRL rejecting each interchange
    whose UNB could be read (nothing of the document is applied)."""
    try:
        reports = _rejection_reports(body)
        acknowledgments = [contrl.acknowledgment(report, context) for report in reports if report.due]
    except Exception:  # the rejection is a courtesy: the error itself must come out
        acknowledgments = []
    return ParseError(reason, acknowledgments=acknowledgments)


def _rejection_reports(body: bytes) -> list[contrl.InterchangeReport]:
    """Each interchange's report, rejected, naming what could not be read: a segment that is not
    one (inside a message: that message, its position and 15; outside: 33), a message without its
    UNT, an interchange without its UNZ. Read segment by segment, leniently, as far as it goes."""
    characters, texts, tail = _segment_texts(body)
    if tail:
        texts.append(tail)
    reader = Parser()
    reports: list[contrl.InterchangeReport] = []
    current: contrl.InterchangeReport | None = None
    message: contrl.MessageReport | None = None
    opened_at = 0  # the UNH's position in the document

    def close_message(code: str | None) -> None:
        nonlocal message
        if message is not None and current is not None:
            if code:
                message.error, message.rejected = contrl.Fault(code, "UNT"), True
            if message.has_errors:
                current.messages.append(message)
        message = None

    for number, raw in enumerate(texts, start=1):
        try:
            segment: Segment | None = _segment(number, raw, characters, reader)
        except (ParseError, EDISyntaxError):
            segment = None
        tag = segment.tag if segment else ""
        if tag == "UNB":
            close_message(contrl.MISSING)
            if current is not None:
                current.fail(contrl.Fault(contrl.MISSING, "UNZ"))
            current = contrl.interchange_report(segment.elements) if segment else None
            if current is not None:
                current.rejected = True
                reports.append(current)
        elif current is None:
            continue
        elif segment is None or tag not in ("UNH", "UNT", "UNZ", "UNG", "UNE") and message is None:
            if message is None:
                current.fail(contrl.Fault(contrl.OUTSIDE_MESSAGE))
            else:
                message.add(_unreadable(raw, number - opened_at + 1, characters))
                message.rejected = True
        elif tag == "UNH":
            close_message(contrl.MISSING)
            message, opened_at = contrl.MessageReport(segment.get(0), segment.components(1), rejected=False), number
        elif tag == "UNT":
            if message is None:
                current.fail(contrl.Fault(contrl.OUTSIDE_MESSAGE))
            elif segment.get(0) != str(number - opened_at + 1):
                message.error, message.rejected = contrl.Fault(contrl.COUNT_DOES_NOT_MATCH, "UNT", element=1), True
            close_message(None)
        elif tag == "UNZ":
            close_message(contrl.MISSING)
            current = None
    close_message(contrl.MISSING)
    if current is not None:
        current.fail(contrl.Fault(contrl.MISSING, "UNZ"))
    for report in reports:
        if report.error is None and not report.messages:
            report.fail(contrl.Fault(contrl.UNSPECIFIED))
    return reports


def _unreadable(raw: str, position: int, characters: Characters) -> contrl.Fault:
    """A segment that cannot be read: not a segment (15) when it has no tag, else an element with
    invalid characters (21): the last one, where a stray release character sits."""
    if not _TAG.match(raw[:3]) or raw[3:4] not in ("", characters.data_separator):
        return contrl.Fault(contrl.NOT_SUPPORTED, raw[:3], position)
    element = max(len(raw.split(characters.data_separator)) - 1, 1)
    return contrl.Fault(contrl.INVALID_CHARACTERS, raw[:3], position, element)
