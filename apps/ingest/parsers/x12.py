"""ANSI X12: detect, identify the sender, parse into canonical events, acknowledge with 997s.

The pipeline calls :func:`looks_like`, :func:`sender_ids` and :func:`parse`; the writer
(:func:`write_interchange`) is reused for outbound documents.

Envelope problems (control numbers that do not pair, wrong counts, a GS01 that does not match the
set, malformed dates) are warnings when the content is intact: the set still becomes events and
its 997 says "accepted with errors". A set that lost content (no SE, a required segment missing)
is rejected alone. Only a document with no readable interchange, or with no transaction set at
all, raises :class:`ParseError`.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apps.ingest.parsers import x12_inventory, x12_sets
from apps.ingest.parsers.base import (
    Acknowledgment,
    ParseContext,
    ParsedDocument,
    ParseError,
    ReferenceBudget,
    ReferenceModels,
    capped,
    collection_paused,
)
from apps.ingest.parsers.x12_reader import (
    Group,
    Interchange,
    Segment,
    TransactionSet,
    decode,
    is_segment_id,
    isa_start,
    read_interchanges,
)
from apps.ingest.parsers.x12_sets import SetDocument, SetRejected
from apps.ingest.parsers.x12_writer import (
    Envelope,
    GroupAck,
    OutboundSet,
    Party,
    SetAck,
    X12Writer,
    ack_997,
    write_interchange,
)

__all__ = [
    "Envelope",
    "OutboundSet",
    "Party",
    "X12Writer",
    "looks_like",
    "parse",
    "sender_ids",
    "write_interchange",
]

FUNCTIONAL_IDS = {
    "856": "SH",
    "810": "IN",
    "214": "QM",
    "850": "PO",
    "940": "OW",
    "945": "SW",
    "210": "IM",
    "846": "IB",
    "947": "AW",
    "180": "AN",
    "997": "FA",
}
MAPPERS = {**x12_sets.MAPPERS, **x12_inventory.MAPPERS}
SET_NAMES = {
    "204": "Motor Carrier Load Tender",
    "211": "Motor Carrier Bill of Lading",
    "315": "Status Details (Ocean)",
    "820": "Payment Order/Remittance Advice",
    "824": "Application Advice",
    "855": "Purchase Order Acknowledgment",
    "860": "Purchase Order Change Request",
    "880": "Grocery Products Invoice",
    "943": "Warehouse Stock Transfer Shipment Advice",
    "944": "Warehouse Stock Transfer Receipt Advice",
    "990": "Response to a Load Tender",
    "999": "Implementation Acknowledgment",
}
ACK_STATUS = {"A": "accepted", "E": "accepted_with_errors", "P": "accepted_with_errors", "R": "rejected"}
# AK502 / AK905 syntax error codes we report.
SET_TRAILER_MISSING = "2"
SET_CONTROL_MISMATCH = "3"
SET_COUNT_WRONG = "4"
SET_SEGMENTS_IN_ERROR = "5"
GROUP_TRAILER_MISSING = "3"
GROUP_CONTROL_MISMATCH = "4"
GROUP_COUNT_WRONG = "5"


def looks_like(body: bytes) -> bool:
    """An X12 interchange: ``ISA`` and a separator after an optional BOM and whitespace."""
    return isa_start(decode(body[:512])) is not None


@collection_paused()
def sender_ids(body: bytes) -> list[tuple[str, str]]:
    """(ISA05, ISA06) of every interchange and ("GS", GS02) of every group, in order, without repeats.

    For identifying the sending partner before parsing: never raises, returns [] on garbage.
    """
    try:
        interchanges, _ = read_interchanges(decode(body))
    except ParseError:
        return []
    found: dict[tuple[str, str], None] = {}
    for interchange in interchanges:
        found.setdefault((interchange.header.get(5), interchange.header.get(6)), None)
        for group in interchange.groups:
            if group.header is not None and group.get(2):
                found.setdefault(("GS", group.get(2)), None)
    return list(found)


@collection_paused()
def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    """Every set of every group of every interchange in ``body``, with a 997 per inbound group."""
    interchanges, notes = read_interchanges(decode(body))
    if not any(group.sets for interchange in interchanges for group in interchange.groups):
        last = interchanges[-1].last or interchanges[-1].header
        raise ParseError(
            f"no transaction set: expected an ST, found the end of the input after segment {last.number} ({last.id})"
        )
    run = _Run(context=context, document=ParsedDocument(), budget=ReferenceBudget(len(body)))
    for note in notes:
        run.warn(note)
    if not _zone_exists(context.time_zone):
        run.warn(f"time zone {context.time_zone!r} is unknown; times without a zone are read as UTC")
    for interchange in interchanges:
        _parse_interchange(run, interchange)
    document = run.document
    document.warnings, document.unsupported = capped(document.warnings), capped(document.unsupported)
    document.unmapped_codes = list(dict.fromkeys(document.unmapped_codes))
    return document


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass
class _Run:
    context: ParseContext
    document: ParsedDocument
    budget: ReferenceBudget
    seen: set[str] = field(default_factory=set)
    reference_models: ReferenceModels = field(default_factory=ReferenceModels)
    reported: set[str] = field(default_factory=set)

    def warn(self, message: str) -> None:
        """Each warning once, however many events or sets run into it."""
        if message not in self.seen:
            self.seen.add(message)
            self.document.warnings.append(message)

    def unsupported(self, message: str) -> None:
        if message not in self.reported:
            self.reported.add(message)
            self.document.unsupported.append(message)


def _parse_interchange(run: _Run, interchange: Interchange) -> None:
    prefix = f"X12 interchange {interchange.control_number or '(no ISA13)'}"
    problems = _interchange_problems(interchange)
    for problem in problems:
        run.warn(f"{prefix}: {problem}")
    for stray in interchange.stray:
        run.warn(f"{prefix}: {stray} is outside any transaction set; ignored")
    for group in interchange.groups:
        ack = _parse_group(run, interchange, group, envelope_errors=bool(problems))
        if ack is not None:
            run.document.acknowledgments.append(_acknowledgment(run.context, interchange, group, ack))


def _interchange_problems(interchange: Interchange) -> list[str]:
    isa, iea = interchange.header, interchange.trailer
    if iea is None:
        last = interchange.last or isa
        return [f"no IEA: expected IEA after segment {last.number} ({last.id}), found the end of the interchange"]
    problems = []
    if iea.get(2) != isa.get(13):
        problems.append(f"{iea.label(2)}: expected {isa.get(13)!r} (ISA13), found {iea.get(2)!r}")
    if iea.get(1) != str(len(interchange.groups)):
        problems.append(
            f"{iea.label(1)}: expected {len(interchange.groups)} (functional groups in the interchange), "
            f"found {iea.get(1)!r}"
        )
    return problems


def _parse_group(run: _Run, interchange: Interchange, group: Group, *, envelope_errors: bool) -> GroupAck | None:
    """Map every set of the group; return what its 997 must say (None when no 997 is due)."""
    gs = group.header
    if gs is None:
        st = group.sets[0].header
        run.warn(f"{st.label()}: expected a GS before the ST, found none; the sets are read but not acknowledged")
    else:
        _check_version(run, interchange, gs)
    codes = _group_problems(run, gs, group) if gs is not None else []
    acks = [
        _parse_set(run, interchange, group, tx, envelope_errors=envelope_errors or bool(codes)) for tx in group.sets
    ]
    if gs is None or gs.get(1).upper() == "FA" or all(tx.type == "997" for tx in group.sets):
        return None
    included = group.trailer.get(1) if group.trailer else ""
    return GroupAck(
        functional_id=gs.get(1),
        control_number=gs.get(6),
        version=gs.get(8),
        sets=acks,
        included=int(included) if included.isdigit() else len(group.sets),
        codes=codes,
        errors=envelope_errors,
    )


def _check_version(run: _Run, interchange: Interchange, gs: Segment) -> None:
    isa12, gs08 = interchange.header.get(12), gs.get(8)
    if gs08 and isa12 and gs08[:5] != isa12:
        run.warn(
            f"{_group_prefix(gs)}: {gs.label(8)}: version {gs08!r} does not match ISA12 {isa12!r}; "
            f"the group is read as {gs08}"
        )


def _group_prefix(gs: Segment) -> str:
    return f"X12 group {gs.get(6) or '(no GS06)'} ({gs.get(1) or 'no GS01'})"


def _group_problems(run: _Run, gs: Segment, group: Group) -> list[str]:
    """Warn about the group trailer; return the AK905 codes for the 997."""
    ge = group.trailer
    prefix = _group_prefix(gs)
    if ge is None:
        last = group.sets[-1].trailer or group.sets[-1].end if group.sets else gs
        run.warn(f"{prefix}: no GE: expected GE after segment {last.number} ({last.id}), found none")
        return [GROUP_TRAILER_MISSING]
    codes = []
    if ge.get(2) != gs.get(6):
        run.warn(f"{prefix}: {ge.label(2)}: expected {gs.get(6)!r} (GS06), found {ge.get(2)!r}")
        codes.append(GROUP_CONTROL_MISMATCH)
    if ge.get(1) != str(len(group.sets)):
        run.warn(
            f"{prefix}: {ge.label(1)}: expected {len(group.sets)} (transaction sets in the group), found {ge.get(1)!r}"
        )
        codes.append(GROUP_COUNT_WRONG)
    return codes


@dataclass
class _SetState:
    prefix: str
    run: _Run
    status: str = "A"
    codes: list[str] = field(default_factory=list)

    def error(self, message: str, code: str | None = None) -> None:
        self.run.warn(f"{self.prefix}: {message}")
        if self.status == "A":
            self.status = "E"
        if code and code not in self.codes:
            self.codes.append(code)

    def reject(self, message: str, code: str | None = None) -> None:
        self.run.warn(f"{self.prefix}: rejected: {message}")
        self.status = "R"
        if code and code not in self.codes:
            self.codes.append(code)


def _parse_set(
    run: _Run, interchange: Interchange, group: Group, tx: TransactionSet, *, envelope_errors: bool
) -> SetAck:
    state = _SetState(prefix=f"X12 {tx.type or '(no ST01)'} set {tx.control_number or '(no ST02)'}", run=run)
    if tx.trailer is None:
        end = tx.end or tx.header
        state.reject(
            f"truncated: expected SE after segment {end.number} ({end.id}), found "
            f"{tx.closed_by.label() if tx.closed_by else 'the end of the input'}; the set is not used",
            SET_TRAILER_MISSING,
        )
        return SetAck(tx.type, tx.control_number, state.status, state.codes)
    _check_set_envelope(state, group, tx, tx.trailer)
    if envelope_errors:
        state.status = "E"
    _map_set(state, interchange, group, tx)
    return SetAck(tx.type, tx.control_number, state.status, state.codes)


def _check_set_envelope(state: _SetState, group: Group, tx: TransactionSet, se: Segment) -> None:
    if se.get(2) != tx.control_number:
        state.error(f"{se.label(2)}: expected {tx.control_number!r} (ST02), found {se.get(2)!r}", SET_CONTROL_MISMATCH)
    count = len(tx.segments) + 2
    if se.get(1) != str(count):
        state.error(f"{se.label(1)}: expected {count} (segments from ST to SE), found {se.get(1)!r}", SET_COUNT_WRONG)
    expected = FUNCTIONAL_IDS.get(tx.type)
    gs = group.header
    if expected and gs is not None and gs.get(1).upper() != expected:
        state.error(f"{gs.label(1)}: expected {expected!r} for a {tx.type} set, found {gs.get(1)!r}")
    kept = []
    for segment in tx.segments:
        if is_segment_id(segment.id):
            kept.append(segment)
        else:
            state.error(
                f"segment {segment.number}: expected a segment id, found {segment.id[:20]!r}; ignored",
                SET_SEGMENTS_IN_ERROR,
            )
    tx.segments[:] = kept


def _map_set(state: _SetState, interchange: Interchange, group: Group, tx: TransactionSet) -> None:
    run = state.run
    if tx.type == "997":
        _read_997(run, tx, interchange)
        return
    mapper = MAPPERS.get(tx.type)
    if mapper is None:
        name = SET_NAMES.get(tx.type)
        where = f"set {tx.control_number}" + (f" of group {group.get(6)}" if group.header else "")
        run.unsupported(f"X12 {tx.type} ({f'{name}, ' if name else ''}{where}) is not supported")
        return
    doc = SetDocument(
        transaction=tx,
        group=group,
        interchange=interchange,
        context=run.context,
        sender=run.context.partner or _sender(interchange),
        warn=lambda message: state.error(message, SET_SEGMENTS_IN_ERROR),
        budget=run.budget,
        reference_models=run.reference_models,
    )
    try:
        events = mapper(doc)
    except SetRejected as exc:
        state.reject(str(exc))
        return
    run.document.events.extend(events)
    run.document.unmapped_codes.extend(doc.unmapped_codes)
    for message in doc.unsupported:
        run.unsupported(message)


def _sender(interchange: Interchange) -> str:
    return f"{interchange.header.get(5)}:{interchange.header.get(6)}"


def _read_997(run: _Run, tx: TransactionSet, interchange: Interchange) -> None:
    """An inbound 997 acknowledges what we sent: silent when accepted, a warning when it rejects."""
    ak1 = next((s for s in tx.segments if s.id == "AK1"), None)
    ak9 = next((s for s in tx.segments if s.id == "AK9"), None)
    rejected, current = [], ""
    for segment in tx.segments:
        if segment.id == "AK2":
            current = f"{segment.get(2)} ({segment.get(1)})"
        elif segment.id == "AK5" and segment.get(1).upper() not in ("A", "E"):
            rejected.append(current or "(no AK2)")
    group_status = ak9.get(1).upper() if ak9 else ""
    if rejected or group_status in ("R", "P"):
        group = f"group {ak1.get(2)} ({ak1.get(1)})" if ak1 else "a group"
        sets = f"; rejected sets: {', '.join(rejected)}" if rejected else ""
        run.warn(
            f"X12 997 set {tx.control_number} from {_sender(interchange)}: the partner did not accept {group} "
            f"(AK9 {group_status or 'missing'}){sets}"
        )


def _acknowledgment(context: ParseContext, interchange: Interchange, group: Group, ack: GroupAck) -> Acknowledgment:
    """The 997 for ``group``, addressed back to its sender under a control number derived from the
    inbound control numbers, so replaying a message writes the same 997."""
    writer = X12Writer()
    isa = interchange.header
    seed = "|".join((isa.get(6), isa.get(13), group.get(2), group.get(6)))
    control = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 999_999_999 + 1
    version = writer.clean(group.get(8))[:12] or "004010"
    envelope = Envelope(
        sender=Party(writer.clean(isa.get(7))[:2], writer.clean(isa.get(8))[:15]),
        receiver=Party(writer.clean(isa.get(5))[:2], writer.clean(isa.get(6))[:15]),
        application_sender=writer.clean(group.get(3))[:15],
        application_receiver=writer.clean(group.get(2))[:15],
        control_number=control,
        created_at=context.received_at or datetime.now(UTC),
        version=version,
        usage=isa.get(15) if isa.get(15) in ("P", "T") else "P",
    )
    body = write_interchange(envelope, "FA", [ack_997(ack, writer)])
    return Acknowledgment(format="x12", body=body, control_number=f"{control:09d}", status=ACK_STATUS[ack.status])
