"""Turning one X12 transaction set into canonical events.

Each mapper reads a :class:`SetDocument` (the set's segments, its envelope, the parse context)
and returns events. A mapper raises :class:`SetRejected` when the set cannot be used (a required
segment is missing); it reports a bad value through ``doc.warn`` and carries on without it.

Event ids come from the sender and the business content, never from control numbers: the same
ship notice resent in a new interchange is the same event.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter, ValidationError

from apps.ingest.parsers.base import ParseContext, ReferenceBudget, ReferenceModels, finished
from apps.ingest.parsers.x12_reader import Group, Interchange, Segment, TransactionSet
from apps.ingest.parsers.x12_values import (
    Moment,
    identifier_pairs,
    read_date,
    read_decimal,
    read_moment,
    read_time,
    zone,
)
from apps.timeline.events import (
    CanonicalEvent,
    EventKind,
    EventLine,
    EventLocation,
    EventReference,
    OrderInfo,
    ReferenceKind,
    normalize_reference,
)

MAX_RAW = 100_000
# A 214 status repeats the set's header in its raw text: the header's first characters only.
STATUS_HEADER_RAW = 2000
MAX_REFERENCES = 200
MAX_LINES = 5000
SKU_QUALIFIERS = ("SK", "VP", "BP", "UP", "IN", "EN", "MG", "VN")

# Default AT701 status table; a channel overrides it with mapping_overrides["status_codes"].
DEFAULT_STATUS_CODES: dict[str, EventKind] = {
    "X3": EventKind.SHIPMENT_PICKED_UP,  # arrived at pick-up location
    "AF": EventKind.SHIPMENT_PICKED_UP,  # departed pick-up location with shipment
    "CP": EventKind.SHIPMENT_PICKED_UP,  # completed loading at pick-up location
    "X6": EventKind.SHIPMENT_IN_TRANSIT,  # en route to delivery location
    "P1": EventKind.SHIPMENT_IN_TRANSIT,  # departed terminal
    "X4": EventKind.SHIPMENT_IN_TRANSIT,  # arrived at terminal
    "I1": EventKind.SHIPMENT_IN_TRANSIT,  # in-gate
    "OA": EventKind.SHIPMENT_IN_TRANSIT,  # out-gate
    "J1": EventKind.SHIPMENT_IN_TRANSIT,  # delivered to connecting line
    "AV": EventKind.SHIPMENT_IN_TRANSIT,  # available for delivery (still with the carrier)
    "AG": EventKind.SHIPMENT_ETA_UPDATED,  # estimated delivery
    "X1": EventKind.SHIPMENT_OUT_FOR_DELIVERY,  # arrived at delivery location
    "D1": EventKind.SHIPMENT_DELIVERED,  # completed unloading at delivery location
    "CD": EventKind.SHIPMENT_DELIVERED,  # carrier departed delivery location
    "AH": EventKind.SHIPMENT_DELIVERY_ATTEMPTED,  # attempted delivery
    "AP": EventKind.SHIPMENT_DELIVERY_ATTEMPTED,  # delivery not completed
    "SD": EventKind.SHIPMENT_DELAYED,  # shipment delayed
    "A9": EventKind.SHIPMENT_DAMAGED,  # shipment damaged
    "A7": EventKind.SHIPMENT_REFUSED,  # refused by consignee
    # AT701 empty, AT703 = appointment status: a delivery appointment is a new estimate.
    "AT703:AB": EventKind.SHIPMENT_ETA_UPDATED,  # delivery appointment date and/or time
}
# Kinds whose AT7 date is an estimate, not the moment something happened.
ESTIMATE_KINDS = frozenset({EventKind.SHIPMENT_ETA_UPDATED})


class SetRejected(Exception):
    """The set cannot be turned into events; the message says why, precisely."""


@dataclass
class SetDocument:
    """One transaction set with what mappers need around it."""

    transaction: TransactionSet
    group: Group
    interchange: Interchange
    context: ParseContext
    sender: str
    warn: Callable[[str], None]
    budget: ReferenceBudget
    unmapped_codes: list[str] = field(default_factory=list)  # as met, repeats included
    unsupported: list[str] = field(default_factory=list)
    reference_models: ReferenceModels = field(default_factory=ReferenceModels)  # shared by a document's sets

    @property
    def segments(self) -> list[Segment]:
        return self.transaction.segments

    @property
    def version(self) -> str:
        return self.group.get(8) or self.interchange.header.get(12)

    @property
    def short_years(self) -> bool:
        """Before 004010 X12 dates were YYMMDD."""
        return self.version[:6] < "004010"

    def require(self, segment_id: str) -> Segment:
        found = first(self.segments, segment_id)
        if found is None:
            raise SetRejected(f"required segment {segment_id} is missing")
        return found

    def require_value(self, segment: Segment, position: int, what: str) -> str:
        value = segment.get(position)
        if not value:
            raise SetRejected(f"{segment.label(position)}: expected the {what}, found nothing")
        return value

    def moment(
        self, segment: Segment | None, date_at: int, time_at: int | None, zone_at: int | None = None
    ) -> Moment | None:
        if segment is None:
            return None
        return read_moment(
            segment,
            date_at,
            time_at,
            zone_at,
            default_zone=self.context.time_zone,
            warn=self.warn,
            short_years=self.short_years,
        )

    def envelope_moment(self) -> Moment | None:
        """When the document was created (GS04/GS05, else ISA09/ISA10), else when it was received.

        Read once per set: every status that falls back on it would read it again, and its warnings
        (a bad GS04, say) are reported once anyway.
        """
        return self._envelope_moment

    @cached_property
    def _envelope_moment(self) -> Moment | None:
        if self.group.header is not None:
            found = self.moment(self.group.header, 4, 5)
            if found:
                return found
        isa = self.interchange.header
        day = read_date(isa, 9, self.warn, short_years=True)
        if day is not None:
            clock = read_time(isa, 10, self.warn)
            at = datetime.combine(day, clock) if clock else datetime.combine(day, datetime.min.time())
            return Moment(at.replace(tzinfo=zone(self.context.time_zone)))
        received = self.context.received_at
        return Moment(received) if received and received.tzinfo else None

    def when(self, *candidates: Moment | None) -> Moment:
        for candidate in (*candidates, self.envelope_moment()):
            if candidate is not None:
                return candidate
        raise SetRejected("no usable date: neither the set nor its envelope carries one")

    @cached_property
    def raw(self) -> str:
        """The whole set as text, ST to SE."""
        segments = [self.transaction.header, *self.segments]
        if self.transaction.trailer:
            segments.append(self.transaction.trailer)
        return self.text(segments)

    def text(self, segments: Iterable[Segment], limit: int = MAX_RAW) -> str:
        """The segments one a line, cut at ``limit`` characters (what is cut is never joined)."""
        delimiters = self.interchange.delimiters
        terminator = "\n" if delimiters.line_terminated else delimiters.segment + "\n"
        lines, length = [], 0
        for segment in segments:
            if length >= limit:
                break
            lines.append(segment.text(delimiters))
            length += len(lines[-1]) + len(terminator)
        return terminator.join(lines)[:limit]

    def event(
        self,
        kind: EventKind,
        *,
        moment: Moment,
        refs: "References",
        timeless_id: bool = False,
        raw: str | None = None,
        **fields: Any,
    ) -> CanonicalEvent:
        """Build an event whose id hashes its business content (not the raw text or control numbers).

        ``timeless_id`` leaves the time out of the id when the time is the document's own creation
        time, which a resend changes. ``raw`` defaults to the whole set.
        """
        self.budget.spend(len(refs.items))
        attributes = {key: value for key, value in fields.pop("attributes", {}).items() if value not in (None, "")}
        if moment.zone_assumed:
            attributes["time_zone_assumed"] = True
        references, dumped_references = refs.validated(self.reference_models)
        try:
            event = CanonicalEvent(
                event_id="pending",
                kind=kind,
                occurred_at=moment.at,
                references=references,
                attributes=attributes,
                **fields,
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'event'}: {e['msg']}" for e in exc.errors())
            raise SetRejected(f"cannot build a {kind.value} event: {problems}") from exc
        content = _content_json(event, dumped_references, timeless_id=timeless_id)
        digest = hashlib.sha256(content.encode()).hexdigest()[:24]
        # The raw text, already cut at MAX_RAW, is set without validation: events of one set share
        # it, and validating it again for each of thousands of statuses would cost its length each time.
        event_id = f"x12:{self.sender}:{self.transaction.type}:{digest}"[:200]
        return finished(event, event_id=event_id, raw=raw or self.raw)


# What an event id leaves out of the event's JSON form (references are put back as dumped once).
_NOT_HASHED = frozenset({"event_id", "raw", "source", "references"})
# What json.dumps(..., sort_keys=True) builds on every call, built once.
_SORTED_JSON = json.JSONEncoder(sort_keys=True)
_REFERENCE_LIST = TypeAdapter(list[EventReference])


def _content_json(event: CanonicalEvent, references: list[dict[str, Any]], *, timeless_id: bool) -> str:
    """``json.dumps(content, sort_keys=True)`` of the event's business content: its JSON form but
    for the id, raw text and source, without the time for a timeless id. ``references`` is the
    JSON form of its references, dumped once per set of references instead of once per event."""
    content = event.model_dump(mode="json", exclude=_NOT_HASHED)
    if timeless_id:
        content.pop("occurred_at")
    content["references"] = references
    return _SORTED_JSON.encode(content)


class References:
    """Typed references in the order found, without blanks or repeats, capped at the schema's limit."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.items: dict[tuple[ReferenceKind, str], None] = {}
        self.dropped = 0
        self._validated: tuple[tuple[tuple[ReferenceKind, str], ...], list[Any], list[Any]] | None = None

    def add(self, kind: ReferenceKind, value: str, segment: Segment | None = None, position: int = 0) -> None:
        value = normalize_reference(value)
        if not value or (kind, value) in self.items:
            return
        if len(value) > 100:
            where = f"{segment.label(position)}: " if segment else ""
            self.warn(f"{where}{kind.value} reference longer than 100 characters; ignored")
        elif len(self.items) >= MAX_REFERENCES:
            self.dropped += 1
            if self.dropped == 1:
                self.warn(f"more than {MAX_REFERENCES} references; the first {MAX_REFERENCES} are kept")
        else:
            self.items[(kind, value)] = None

    def copy(self) -> "References":
        other = References(self.warn)
        other.items = dict(self.items)
        return other

    def as_list(self) -> list[dict[str, str]]:
        return [{"kind": kind.value, "value": value} for kind, value in self.items]

    def validated(self, models: ReferenceModels) -> tuple[list[Any], list[Any]]:
        """The references for an event (validated models, or the plain dicts when one is invalid)
        and their JSON form, as an event id hashes it; kept while no reference is added."""
        items = tuple(self.items)
        if self._validated is None or self._validated[0] != items:
            references = models.of((kind.value, value) for kind, value in items)
            valid = all(isinstance(reference, EventReference) for reference in references)
            listed = _REFERENCE_LIST.dump_python(references, mode="json") if valid else []  # invalid: never hashed
            self._validated = (items, references, listed)
        return self._validated[1], self._validated[2]

    def __bool__(self) -> bool:
        return bool(self.items)


def first(segments: Iterable[Segment], segment_id: str, qualifier: str | None = None) -> Segment | None:
    return next(
        (s for s in segments if s.id == segment_id and (qualifier is None or s.get(1).upper() == qualifier)), None
    )


def matching(segments: Iterable[Segment], segment_id: str, qualifier: str | None = None) -> list[Segment]:
    return [s for s in segments if s.id == segment_id and (qualifier is None or s.get(1).upper() == qualifier)]


def add_qualified(
    refs: References, segments: Iterable[Segment], segment_id: str, table: dict[str, ReferenceKind], value_at: int = 2
) -> None:
    """REF/L11/N9 style references: the qualifier picks the kind (L11 has it in L1102)."""
    qualifier_at = 2 if segment_id == "L11" else 1
    for segment in segments:
        if segment.id == segment_id and (kind := table.get(segment.get(qualifier_at).upper())):
            refs.add(kind, segment.get(1 if segment_id == "L11" else value_at), segment, value_at)


def build_line(
    doc: SetDocument,
    segment: Segment,
    *,
    sku: str,
    quantity_at: int,
    uom_at: int,
    price_at: int | None = None,
    line_number: str = "",
    order: str | None = None,
) -> EventLine | None:
    """One line, or None with a warning when its quantity or product is unreadable."""
    if not sku:
        doc.warn(f"{segment.label()}: expected a product identifier (SK, VP, BP, UP…), found none; line ignored")
        return None
    quantity = read_decimal(segment, quantity_at, doc.warn)
    if quantity is None:
        doc.warn(f"{segment.label(quantity_at)}: no readable quantity for {sku!r}; line ignored")
        return None
    price = read_decimal(segment, price_at, doc.warn) if price_at else None
    try:
        return EventLine(
            sku=sku[:100],
            quantity=quantity,
            uom=(segment.get(uom_at) or "EA")[:10],
            unit_price=price,
            line_number=line_number[:20] or None,
            order=order,
        )
    except ValidationError as exc:
        doc.warn(f"{segment.label()}: line for {sku!r} ignored: {exc.errors()[0]['msg']}")
        return None


def pick_sku(pairs: dict[str, str]) -> str:
    for qualifier in SKU_QUALIFIERS:
        if pairs.get(qualifier):
            return pairs[qualifier]
    return next(iter(pairs.values()), "")


def capped(lines: Iterable[EventLine | None], doc: SetDocument) -> list[EventLine]:
    kept = [line for line in lines if line is not None]
    if len(kept) > MAX_LINES:
        doc.warn(f"{len(kept)} lines; only the first {MAX_LINES} are kept")
    return kept[:MAX_LINES]


def party(segments: list[Segment], entity: str) -> EventLocation | None:
    """The N1 loop for ``entity`` (SF ship-from, ST ship-to) as a location: N102 name, N4 address."""
    for index, segment in enumerate(segments):
        if segment.id != "N1" or segment.get(1).upper() != entity:
            continue
        n4 = None
        for following in segments[index + 1 :]:
            if following.id not in ("N2", "N3", "N4"):
                break
            if following.id == "N4":
                n4 = following
        return EventLocation(
            name=segment.get(2)[:200] or None,
            city=n4.get(1)[:100] or None if n4 else None,
            state=n4.get(2)[:60] or None if n4 else None,
            postal_code=n4.get(3)[:20] or None if n4 else None,
            country=n4.get(4)[:60] or None if n4 else None,
        )
    return None


def currency_of(doc: SetDocument) -> str | None:
    cur = first(doc.segments, "CUR")
    currency = cur.get(2).upper() if cur else ""
    if currency and (len(currency) != 3 or not currency.isalpha()):
        doc.warn(f"{cur.label(2)}: expected a 3-letter currency code, found {currency!r}; ignored")
        return None
    return currency or None


# 856 ---------------------------------------------------------------------------------------------

LEVEL_RANK = {"S": 0, "O": 1, "T": 2, "P": 3, "I": 4}
# PK packing list → asn, as the EDIFACT reader files a despatch advice or delivery note number.
SHIPMENT_REFS_856 = {
    "BM": ReferenceKind.BOL,
    "CN": ReferenceKind.PRO,
    "PK": ReferenceKind.ASN,
    "2I": ReferenceKind.TRACKING,
}
# What numbers a shipment whose BSN02 is empty, in this order: bill of lading, carrier reference,
# packing list (REF01 qualifiers, at the shipment level or before the first HL).
SHIPMENT_IDENTIFIERS_856 = ("BM", "CN", "PK")


@dataclass
class HLNode:
    segment: Segment
    level: str
    parent: "HLNode | None"
    segments: list[Segment] = field(default_factory=list)
    children: list["HLNode"] = field(default_factory=list)

    def walk(self) -> Iterator["HLNode"]:
        """This node and its descendants in document order (iterative: hierarchies can be deep)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def hierarchy(doc: SetDocument) -> tuple[list[Segment], list[HLNode]]:
    """Header segments and every HL node, linked by HL02 (or, when HL02 is absent or unknown, by
    level: an HL hangs under the latest HL of a higher level)."""
    header: list[Segment] = []
    nodes: list[HLNode] = []
    by_id: dict[str, HLNode] = {}
    latest: dict[int, tuple[int, HLNode]] = {}  # rank -> (position, node) of the latest HL of that rank
    for segment in doc.segments:
        if segment.id != "HL":
            (nodes[-1].segments if nodes else header).append(segment)
            continue
        level = segment.get(3).upper()
        rank = LEVEL_RANK.get(level, len(LEVEL_RANK))
        parent_id = segment.get(2)
        parent = by_id.get(parent_id)
        if parent_id and parent is None:
            doc.warn(f"{segment.label(2)}: parent HL {parent_id!r} is not an earlier HL; placed by level")
        if parent is None:
            higher = [found for higher_rank, found in latest.items() if higher_rank < rank]
            parent = max(higher, key=lambda found: found[0])[1] if higher else None
        node = HLNode(segment=segment, level=level, parent=parent)
        if parent is not None:
            parent.children.append(node)
        latest[rank] = (len(nodes), node)
        nodes.append(node)
        by_id.setdefault(segment.get(1), node)
    return header, nodes


def order_key(node: HLNode | None) -> str | None:
    """What a line's ``order`` names: the order HL's PO (PRF01), else its vendor order (REF*VN)."""
    if node is None:
        return None
    prf = first(node.segments, "PRF")
    vn = first(node.segments, "REF", "VN")
    value = (prf.get(1) if prf else "") or (vn.get(2) if vn else "")
    return value[:100] or None


def map_856(doc: SetDocument) -> list[CanonicalEvent]:
    bsn = doc.require("BSN")
    if bsn.get(1) in ("01", "03"):
        doc.unsupported.append(f"X12 856 cancellation (BSN01 {bsn.get(1)!r}) of {bsn.get(2)!r} is not supported")
        return []
    header, nodes = hierarchy(doc)
    shipments = [node for node in nodes if node.level == "S"]
    roots = shipments or [
        HLNode(segment=bsn, level="S", parent=None, segments=[], children=[n for n in nodes if not n.parent])
    ]
    shared = _Header856(header)
    orders = _orders(nodes)
    numbers = _shipment_numbers(bsn, header, roots)
    return [
        _shipment_856(doc, bsn, number, shared, root, orders, several=len(roots) > 1)
        for number, root in zip(numbers, roots, strict=True)
    ]


def _shipment_numbers(bsn: Segment, header: list[Segment], roots: list["HLNode"]) -> list[tuple[str, Segment, int]]:
    """Each shipment's number, with the segment and element it comes from.

    BSN02 when present (BSN02-HL01 when the set holds several S levels); otherwise the shipment's
    own bill of lading, carrier reference or packing list (``SHIPMENT_IDENTIFIERS_856``), else the
    one before the first HL, with -HL01 when several shipments would share it.
    """
    shipment_id = bsn.get(2)
    if shipment_id:
        if len(roots) == 1:
            return [(shipment_id, bsn, 2)]
        return [(f"{shipment_id}-{root.segment.get(1)}", root.segment, 1) for root in roots]
    numbers = []
    before_hl = _identifier(header)  # read once: a set can hold thousands of shipments
    for root in roots:
        found = _identifier(root.segments) or before_hl
        if found is None:
            raise SetRejected(
                f"{bsn.label(2)}: expected the shipment identification, or a bill of lading, carrier reference "
                f"or packing list (REF*{'/'.join(SHIPMENT_IDENTIFIERS_856)}) for the shipment, found nothing"
            )
        numbers.append(found)
    counts = Counter(number for number, _, _ in numbers)
    return [
        (f"{number}-{root.segment.get(1)}", root.segment, 1) if counts[number] > 1 else (number, segment, position)
        for (number, segment, position), root in zip(numbers, roots, strict=True)
    ]


def _identifier(segments: list[Segment]) -> tuple[str, Segment, int] | None:
    for qualifier in SHIPMENT_IDENTIFIERS_856:
        found = next((s for s in segments if s.id == "REF" and s.get(1).upper() == qualifier and s.get(2)), None)
        if found is not None:
            return found.get(2), found, 2
    return None


class _Header856:
    """What the segments before the first HL give every shipment of the set, read once: a set
    with thousands of shipments under a long header must not read the header thousands of times."""

    def __init__(self, header: list[Segment]) -> None:
        self.shipment_refs = _qualified(header, "REF", SHIPMENT_REFS_856)
        self.containers = _qualified(header, "MAN", MAN_REFS_856)
        self.carrier = next((s for s in header if s.id == "TD5" and s.get(3)), None)
        self.dates = {qualifier: first(header, "DTM", qualifier) for qualifier in ("011", "017", "067")}
        self.ship_from = party(header, "SF")

    def date(self, own: list[Segment], qualifier: str) -> Segment | None:
        """The first DTM with ``qualifier`` in the header, else in the shipment's own segments."""
        return self.dates[qualifier] or first(own, "DTM", qualifier)


MAN_REFS_856 = {"CP": ReferenceKind.TRACKING, "GM": ReferenceKind.CONTAINER}


def _qualified(
    segments: Iterable[Segment], segment_id: str, table: dict[str, ReferenceKind]
) -> list[tuple[ReferenceKind, str, Segment]]:
    """The references ``add_qualified`` would add (value at position 2), each value once."""
    found: dict[tuple[ReferenceKind, str], Segment] = {}
    for segment in segments:
        if segment.id == segment_id and (kind := table.get(segment.get(1).upper())):
            found.setdefault((kind, normalize_reference(segment.get(2))), segment)
    return [(kind, value, segment) for (kind, value), segment in found.items()]


def _add_all(refs: "References", found: list[tuple[ReferenceKind, str, Segment]]) -> None:
    """Add ``found`` in order, stopping once the references are full and the drop was reported."""
    for kind, value, segment in found:
        if refs.dropped:
            return
        refs.add(kind, value, segment, 2)


def _orders(nodes: list[HLNode]) -> dict[int, str | None]:
    """Each HL's order key: its nearest order-level ancestor's (HLs come after their parents)."""
    keys: dict[int, str | None] = {}
    own: dict[int, str | None] = {}
    for node in nodes:
        if node.level == "O":
            own[id(node)] = order_key(node)
        parent = node.parent
        if parent is None:
            keys[id(node)] = None
        else:
            keys[id(node)] = own[id(parent)] if parent.level == "O" else keys.get(id(parent))
    return keys


def _shipment_856(
    doc: SetDocument,
    bsn: Segment,
    number: tuple[str, Segment, int],
    header: _Header856,
    root: HLNode,
    orders: dict[int, str | None],
    *,
    several: bool,
) -> CanonicalEvent:
    subtree = list(root.walk())
    below = [segment for node in subtree for segment in node.segments]
    refs = References(doc.warn)
    refs.add(ReferenceKind.SHIPMENT, *number)
    if several and bsn.get(2):
        # Several S levels under one BSN02: kept apart as BSN02-HL01, they share the ASN number.
        refs.add(ReferenceKind.ASN, bsn.get(2), bsn, 2)
    _add_all(refs, header.shipment_refs)
    add_qualified(refs, root.segments, "REF", SHIPMENT_REFS_856)
    for node in subtree:
        if node.level == "O":
            for prf in matching(node.segments, "PRF"):
                refs.add(ReferenceKind.PO, prf.get(1), prf, 1)
            add_qualified(refs, node.segments, "REF", {"VN": ReferenceKind.ORDER})
    add_qualified(refs, below, "REF", {"2I": ReferenceKind.TRACKING})
    _add_all(refs, header.containers)
    add_qualified(refs, below, "MAN", MAN_REFS_856)

    lines = []
    for node in subtree:
        lin = first(node.segments, "LIN")
        if lin is None:
            continue
        sn1 = first(node.segments, "SN1")
        if sn1 is None:
            doc.warn(f"{lin.label()}: item has no SN1 (quantity shipped); line ignored")
            continue
        pairs = identifier_pairs(lin, 2)
        line = build_line(
            doc,
            sn1,
            sku=pick_sku(pairs),
            quantity_at=2,
            uom_at=3,
            line_number=lin.get(1),
            order=orders.get(id(node)),
        )
        lines.append(line)

    own = root.segments
    td5 = header.carrier or next((s for s in own if s.id == "TD5" and s.get(3)), None)
    shipped = doc.moment(header.date(own, "011"), 2, 3, 4)
    estimate = doc.moment(header.date(own, "017") or header.date(own, "067"), 2, 3, 4)
    return doc.event(
        EventKind.SHIPMENT_MANIFESTED,
        moment=doc.when(shipped, doc.moment(bsn, 3, 4)),
        refs=refs,
        lines=capped(lines, doc),
        location=header.ship_from or party(own, "SF"),
        estimated_delivery_at=estimate.at if estimate else None,
        attributes={"carrier": td5.get(3) if td5 else None},
    )


# 214 ---------------------------------------------------------------------------------------------

L11_REFS = {
    "BM": ReferenceKind.BOL,
    "PO": ReferenceKind.PO,
    "CN": ReferenceKind.PRO,
    "2I": ReferenceKind.TRACKING,
}


def status_table(doc: SetDocument) -> dict[str, EventKind]:
    """The default table with the channel's overrides; an override naming no shipment kind is skipped."""
    table = dict(DEFAULT_STATUS_CODES)
    overrides = doc.context.mapping.get("status_codes") or {}
    if not isinstance(overrides, dict):
        doc.warn("mapping status_codes: expected an object {code: event kind}; ignored")
        return table
    for code, kind in overrides.items():
        try:
            event_kind = EventKind(kind)
        except ValueError:
            event_kind = None
        if event_kind is None or event_kind.family != "shipment":
            doc.warn(f"mapping status_codes: {code!r} -> {kind!r} is not a shipment event kind; ignored")
            continue
        table[str(code).upper()] = event_kind
    return table


def at7_positions(doc: SetDocument, at7: Segment) -> Segment:
    """Before 004010, AT7 had date (YYMMDD), century, time, zone at 05-08; align them with 004010."""
    if not doc.short_years:
        return at7
    elements = list(at7.elements) + [""] * (9 - len(at7.elements))
    century, day = elements[6].strip(), elements[5].strip()
    full_date = century + day if century and len(day) == 6 else day
    return Segment(at7.number, (*elements[:5], full_date, elements[7], elements[8]))


def status_loops(segments: list[Segment]) -> Iterator[tuple[list[Segment], list[tuple[Segment, list[Segment]]]]]:
    """Each LX loop that holds an AT7, with (AT7, its MS1/MS2…) for each of its AT7s; AT7s before
    any LX form one loop."""
    loops: list[list[Segment]] = [[]]
    for segment in segments:
        if segment.id == "LX":
            loops.append([])
        loops[-1].append(segment)
    for loop in loops:
        statuses: list[tuple[Segment, list[Segment]]] = []
        for segment in loop:
            if segment.id == "AT7":
                statuses.append((segment, []))
            elif statuses:
                statuses[-1][1].append(segment)
        if statuses:
            yield loop, statuses


def location_214(ms1: Segment | None, doc: SetDocument) -> EventLocation | None:
    """MS1 as city/state/country, or as longitude (MS104) and latitude (MS105) with directions."""
    if ms1 is None:
        return None
    longitude = coordinate(ms1, 4, ms1.get(6), doc, limit=180)
    latitude = coordinate(ms1, 5, ms1.get(7), doc, limit=90)
    city, state, country = ms1.get(1)[:100], ms1.get(2)[:60], ms1.get(3)[:60]
    if not (city or state or country or latitude is not None or longitude is not None):
        return None
    return EventLocation(
        city=city or None, state=state or None, country=country or None, latitude=latitude, longitude=longitude
    )


def coordinate(segment: Segment, position: int, direction: str, doc: SetDocument, *, limit: int) -> Decimal | None:
    """Decimal degrees as partners send them, or the standard DDDMMSS/DDMMSS; W and S are negative."""
    value = segment.get(position)
    if not value:
        return None
    number = read_decimal(segment, position, doc.warn)
    if number is None:
        return None
    if "." not in value and len(value.lstrip("+-")) in (6, 7):
        digits = value.lstrip("+-")
        degrees = Decimal(digits[:-4]) + Decimal(digits[-4:-2]) / 60 + Decimal(digits[-2:]) / 3600
        number = -degrees if value.startswith("-") else degrees
    if direction.upper() in ("W", "S"):
        number = -abs(number)
    if abs(number) > limit:
        doc.warn(f"{segment.label(position)}: expected a coordinate, found {value!r}; ignored")
        return None
    return round(number, 6)


def map_214(doc: SetDocument) -> list[CanonicalEvent]:
    b10 = doc.require("B10")
    header_segments = []
    for segment in doc.segments:
        if segment.id == "LX":
            break
        header_segments.append(segment)
    refs = References(doc.warn)
    refs.add(ReferenceKind.PRO, b10.get(1), b10, 1)
    refs.add(ReferenceKind.SHIPMENT, b10.get(2), b10, 2)
    add_qualified(refs, header_segments, "L11", L11_REFS)
    if not refs:
        raise SetRejected(f"{b10.label()}: expected a PRO (B1001), a shipment id (B1002) or an L11 reference")
    table = status_table(doc)
    header = _leading([doc.transaction.header, *header_segments], STATUS_HEADER_RAW)
    events = []
    for loop, statuses in status_loops(doc.segments):
        loop_refs = refs.copy()
        add_qualified(loop_refs, loop, "L11", L11_REFS)
        # Each status keeps the set's header (its start) and its own loop as raw text, not the whole set.
        raw = doc.text([*header, *loop]) if loop[0].id == "LX" else doc.text([doc.transaction.header, *header_segments])
        for at7, details in statuses:
            status = at7_positions(doc, at7)
            events.append(_status_event(doc, status, details, loop_refs, table, scac=b10.get(3), raw=raw))
    if not events:
        doc.warn(f"{b10.label()}: the 214 has no AT7 status")
    return events


def _leading(segments: list[Segment], limit: int) -> list[Segment]:
    """The first segments, up to about ``limit`` characters of elements."""
    kept, length = [], 0
    for segment in segments:
        if length >= limit:
            break
        kept.append(segment)
        length += sum(len(element) + 1 for element in segment.elements)
    return kept


def _status_event(
    doc: SetDocument,
    at7: Segment,
    details: list[Segment],
    refs: References,
    table: dict[str, EventKind],
    *,
    scac: str,
    raw: str,
) -> CanonicalEvent:
    status, appointment = at7.get(1).upper(), at7.get(3).upper()
    code = status or (f"AT703:{appointment}" if appointment else "")
    kind = table.get(code)
    attributes: dict[str, Any] = {
        "carrier": scac,
        "status_code": code or None,
        "reason": at7.get(2) or at7.get(4),
    }
    if kind is None:
        kind = EventKind.SHIPMENT_STATUS_UNMAPPED
        if code:
            doc.unmapped_codes.append(code)
        if not code:
            doc.warn(f"{at7.label()}: expected a status code (AT701) or an appointment code (AT703), found none")
    stated = doc.moment(at7, 5, 6, 7)
    if kind in ESTIMATE_KINDS:
        if stated is None:
            doc.warn(f"{at7.label(5)}: no usable estimated date for {code}")
        return doc.event(
            kind,
            moment=doc.when(),
            refs=refs,
            estimated_delivery_at=stated.at if stated else None,
            location=location_214(first(details, "MS1"), doc),
            attributes=attributes | {"time_zone_assumed": (stated and stated.zone_assumed) or None},
            timeless_id=True,
            raw=raw,
        )
    if stated is None:
        doc.warn(f"{at7.label(5)}: no usable date for status {code or '(none)'}; the document date is used")
    return doc.event(
        kind,
        moment=doc.when(stated),
        refs=refs,
        location=location_214(first(details, "MS1"), doc),
        attributes=attributes,
        timeless_id=stated is None,
        raw=raw,
    )


# 810 ---------------------------------------------------------------------------------------------


def map_810(doc: SetDocument) -> list[CanonicalEvent]:
    big = doc.require("BIG")
    refs = References(doc.warn)
    refs.add(ReferenceKind.INVOICE, doc.require_value(big, 2, "invoice number"), big, 2)
    refs.add(ReferenceKind.PO, big.get(4), big, 4)
    add_qualified(refs, doc.segments, "REF", {"VN": ReferenceKind.ORDER})
    lines = [
        build_line(
            doc,
            it1,
            sku=pick_sku(identifier_pairs(it1, 6)),
            quantity_at=2,
            uom_at=3,
            price_at=4,
            line_number=it1.get(1),
        )
        for it1 in matching(doc.segments, "IT1")
    ]
    tds = first(doc.segments, "TDS")
    invoiced = doc.moment(big, 1, None)
    return [
        doc.event(
            EventKind.INVOICE_GENERATED,
            moment=doc.when(invoiced),
            refs=refs,
            lines=capped(lines, doc),
            amount=read_decimal(tds, 1, doc.warn, implied_decimals=2) if tds else None,
            currency=currency_of(doc),
            timeless_id=invoiced is None,
        )
    ]


# 210 ---------------------------------------------------------------------------------------------


def map_210(doc: SetDocument) -> list[CanonicalEvent]:
    b3 = doc.require("B3")
    refs = References(doc.warn)
    invoice = doc.require_value(b3, 2, "freight invoice number")
    refs.add(ReferenceKind.INVOICE, invoice, b3, 2)
    refs.add(ReferenceKind.PRO, b3.get(3), b3, 3)
    add_qualified(refs, doc.segments, "L11", {"BM": ReferenceKind.BOL, "PO": ReferenceKind.PO})
    c3 = first(doc.segments, "C3")
    currency = c3.get(1).upper() if c3 else ""
    charges = [
        {"code": l1.get(8) or None, "amount": str(charge)}
        for l1 in matching(doc.segments, "L1")
        if (charge := read_decimal(l1, 4, doc.warn, implied_decimals=2)) is not None
    ]
    billed = doc.moment(b3, 6, None)
    return [
        doc.event(
            EventKind.FREIGHT_CHARGE_POSTED,
            moment=doc.when(billed),
            refs=refs,
            amount=read_decimal(b3, 7, doc.warn, implied_decimals=2),
            currency=currency if len(currency) == 3 and currency.isalpha() else None,
            attributes={"carrier": b3.get(11), "charge_number": invoice, "charges": charges or None},
            timeless_id=billed is None,
        )
    ]


# 850 ---------------------------------------------------------------------------------------------


def map_850(doc: SetDocument) -> list[CanonicalEvent]:
    beg = doc.require("BEG")
    refs = References(doc.warn)
    refs.add(ReferenceKind.PO, doc.require_value(beg, 3, "purchase order number"), beg, 3)
    add_qualified(refs, doc.segments, "REF", {"VN": ReferenceKind.ORDER})
    lines = [
        build_line(
            doc,
            po1,
            sku=pick_sku(identifier_pairs(po1, 6)),
            quantity_at=2,
            uom_at=3,
            price_at=4,
            line_number=po1.get(1),
        )
        for po1 in matching(doc.segments, "PO1")
    ]
    promised = doc.moment(first(doc.segments, "DTM", "002"), 2, 3, 4)
    amt = first(doc.segments, "AMT", "TT")
    ordered = doc.moment(beg, 5, None)
    return [
        doc.event(
            EventKind.ORDER_CREATED,
            moment=doc.when(ordered),
            refs=refs,
            lines=capped(lines, doc),
            amount=read_decimal(amt, 2, doc.warn) if amt else None,
            currency=currency_of(doc),
            order=OrderInfo(customer=doc.context.partner, promised_at=promised.at if promised else None),
            timeless_id=ordered is None,
        )
    ]


# 940 / 945 ---------------------------------------------------------------------------------------


def warehouse_sku(segment: Segment, upc_at: int, pairs_at: int, pairs_end: int) -> str:
    pairs = identifier_pairs(segment, pairs_at, pairs_end)
    if segment.get(upc_at):
        pairs.setdefault("UP", segment.get(upc_at))
    return pick_sku(pairs)


def map_940(doc: SetDocument) -> list[CanonicalEvent]:
    w05 = doc.require("W05")
    refs = References(doc.warn)
    refs.add(ReferenceKind.ORDER, w05.get(2), w05, 2)
    refs.add(ReferenceKind.PO, w05.get(3), w05, 3)
    if not refs:
        raise SetRejected(f"{w05.label()}: expected a depositor order number (W0502) or a PO (W0503), found neither")
    lines = [
        build_line(doc, w01, sku=warehouse_sku(w01, 3, 4, 7), quantity_at=1, uom_at=2)
        for w01 in matching(doc.segments, "W01")
    ]
    w66 = first(doc.segments, "W66")
    return [
        doc.event(
            EventKind.ORDER_RELEASED,
            moment=doc.when(),
            refs=refs,
            lines=capped(lines, doc),
            attributes={"carrier": w66.get(10) if w66 else None},
            timeless_id=True,
        )
    ]


def map_945(doc: SetDocument) -> list[CanonicalEvent]:
    w06 = doc.require("W06")
    refs = References(doc.warn)
    order = w06.get(2) or w06.get(6)
    refs.add(ReferenceKind.SHIPMENT, w06.get(4), w06, 4)
    refs.add(ReferenceKind.ORDER, w06.get(2), w06, 2)
    refs.add(ReferenceKind.PO, w06.get(6), w06, 6)
    add_qualified(
        refs, doc.segments, "N9", {"BM": ReferenceKind.BOL, "CN": ReferenceKind.PRO, "2I": ReferenceKind.TRACKING}
    )
    if not refs:
        raise SetRejected(f"{w06.label()}: expected an order (W0602), shipment (W0604) or PO (W0606), found none")
    lines = [
        build_line(doc, w12, sku=warehouse_sku(w12, 6, 7, 8), quantity_at=3, uom_at=5, order=order[:100] or None)
        for w12 in matching(doc.segments, "W12")
    ]
    w27 = first(doc.segments, "W27")
    shipped = doc.moment(w06, 3, None)
    return [
        doc.event(
            EventKind.SHIPMENT_MANIFESTED,
            moment=doc.when(shipped),
            refs=refs,
            lines=capped(lines, doc),
            attributes={"carrier": w27.get(2) if w27 else None},
            timeless_id=shipped is None,
        )
    ]


MAPPERS: dict[str, Callable[[SetDocument], list[CanonicalEvent]]] = {
    "856": map_856,
    "214": map_214,
    "810": map_810,
    "210": map_210,
    "850": map_850,
    "940": map_940,
    "945": map_945,
}
