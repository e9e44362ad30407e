"""CSV / flat-file feeds: shipment status rows, inventory snapshots and order releases.

Configured per channel in ``context.mapping["csv"]``::

    {
        "feed": "shipment_status" | "inventory_snapshot" | "order_release",   # default shipment_status
        "delimiter": ",",            # default: sniffed from the header (, ; tab |)
        "encoding": "utf-8",         # default utf-8 (a BOM is skipped)
        "columns": {"tracking": "Tracking No", "status": "Status", "occurred_at": "Event Time"},
        "time_format": "%d.%m.%Y %H:%M",   # default: ISO 8601 or unix seconds
        "status_codes": {"ZU": "delivered"} # shipment_status: code -> milestone or event kind
    }

A column named like the canonical field (``tracking``, ``tracking_number``, ``status``, ``sku``,
``quantity`` ...; case, spaces and dashes ignored) needs no configuration; a configured column is
found in the header ignoring case and spaces. :func:`channel_matching` picks, among a partner's
CSV channels, the one whose mapping the header row matches, so that a file sent without its format
or channel is still read with the right columns. Rows stream through
``csv.reader`` over a text wrapper, so memory stays flat for large files (:func:`iter_parse`
yields events one by one). A bad row becomes a warning naming its line and column and the rest is
still read; a file without one good row is a ParseError.

- ``shipment_status``: one carrier event per row (status: the generic table of
  :mod:`~apps.ingest.parsers.aggregators.tracking`, overridden by the channel; unknown codes give
  ``shipment.status_unmapped``), plus ``shipment.eta_updated`` when an estimate column is filled.
- ``inventory_snapshot``: one ``inventory.snapshot`` per warehouse and snapshot time (split in
  parts of at most 5,000 lines); the warehouse is the column's value or ``context.partner``.
- ``order_release``: one ``order.released`` per order (and PO, time, warehouse) with its lines.
"""

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from apps.ingest.parsers.aggregators.tracking import (
    GENERIC_STATUSES,
    Checkpoint,
    Tracker,
    TrackingMapper,
    When,
    code_key,
    event_id,
    location,
    raw_text,
    read_time,
    zone_of,
)
from apps.ingest.parsers.base import ParseContext, ParsedDocument, ParseError, collection_paused, shown
from apps.timeline.events import CanonicalEvent, EventKind, EventLine, ReferenceKind

MAX_LINES_PER_EVENT = 5000
MAX_WARNINGS = 200
DELIMITERS = (",", ";", "\t", "|")
# Bytes no text file holds: NUL and the C0 controls other than tab, line feed, form feed and carriage return.
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f]")
REFERENCE_FIELDS = {
    "order": ReferenceKind.ORDER,
    "po": ReferenceKind.PO,
    "shipment": ReferenceKind.SHIPMENT,
    "bol": ReferenceKind.BOL,
    "pro": ReferenceKind.PRO,
    "container": ReferenceKind.CONTAINER,
}
# canonical field -> other header names that mean it without configuration
ALIASES: dict[str, tuple[str, ...]] = {
    "tracking": ("tracking_number", "tracking_no", "tracking_id"),
    "status": ("status_code", "event_code"),
    "occurred_at": ("event_time", "timestamp", "date_time", "snapshot_at", "released_at", "time"),
    "carrier": ("scac", "carrier_code"),
    "message": ("description", "status_description", "reason"),
    "estimated_delivery": ("eta", "estimated_delivery_at", "estimated_delivery_date"),
    "postal_code": ("zip", "postcode"),
    "order": ("order_number", "order_no", "order_id"),
    "po": ("po_number", "purchase_order"),
    "shipment": ("shipment_number", "shipment_id"),
    "sku": ("item", "product", "article"),
    "quantity": ("qty", "on_hand", "quantity_on_hand"),
    "uom": ("unit",),
    "warehouse": ("warehouse_code", "site", "location_code"),
}
SHIPMENT_FIELDS = ("tracking", "status", "occurred_at", "carrier", "message", "estimated_delivery")
PLACE_FIELDS = ("location", "city", "state", "postal_code", "country")
LINE_FIELDS = ("sku", "quantity", "uom")
FEED_FIELDS: dict[str, tuple[str, ...]] = {
    "shipment_status": (*SHIPMENT_FIELDS, *PLACE_FIELDS, *REFERENCE_FIELDS),
    "inventory_snapshot": ("occurred_at", "warehouse", *LINE_FIELDS),
    "order_release": ("order", "po", "occurred_at", "warehouse", *LINE_FIELDS),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "shipment_status": ("tracking", "status", "occurred_at"),
    "inventory_snapshot": ("sku", "quantity"),
    "order_release": ("order", "occurred_at"),
}


class RowError(ValueError):
    """One row cannot be read; the message names the column."""


@dataclass(frozen=True)
class Config:
    feed: str
    delimiter: str | None
    encoding: str
    columns: dict[str, str]
    time_format: str | None
    status_codes: dict[str, Any]


@dataclass
class Row:
    line: int
    cells: dict[str, str]  # canonical field -> stripped value
    headers: dict[str, str]  # canonical field -> header name, for messages
    raw: dict[str, str]

    def value(self, name: str) -> str:
        return self.cells.get(name, "")

    def required(self, name: str) -> str:
        value = self.value(name)
        if not value:
            raise RowError(f"column {self.headers.get(name, name)!r} is empty")
        return value


@dataclass
class Report:
    """Collects warnings into the document, keeping the first :data:`MAX_WARNINGS`."""

    document: ParsedDocument
    bad_rows: int = 0
    hidden: int = 0

    def row(self, line: int, problem: str) -> None:
        self.bad_rows += 1
        if len(self.document.warnings) < MAX_WARNINGS:
            self.document.warnings.append(f"line {line}, {problem}; row skipped")
        else:
            self.hidden += 1

    def close(self) -> None:
        if self.hidden:
            self.document.warnings.append(f"... and {self.hidden} more bad rows")


def _config(context: ParseContext) -> Config:
    raw = context.mapping.get("csv") or {}
    if not isinstance(raw, dict):
        raise ParseError('mapping_overrides["csv"] must be an object')
    feed = raw.get("feed") or "shipment_status"
    if feed not in FEED_FIELDS:
        raise ParseError(f"unknown CSV feed {feed!r}; use one of: {', '.join(FEED_FIELDS)}")
    delimiter = raw.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ParseError(f"the CSV delimiter must be one character, not {delimiter!r}")
    return Config(
        feed=feed,
        delimiter=delimiter,
        encoding=raw.get("encoding") or "utf-8-sig",
        columns={str(name): str(header) for name, header in (raw.get("columns") or {}).items()},
        time_format=raw.get("time_format") or None,
        status_codes=dict(raw.get("status_codes") or {}),
    )


def _first_line(body: bytes) -> str:
    head = body[:8192].decode("utf-8-sig", errors="ignore")
    return next((line for line in head.splitlines() if line.strip()), "")


def _sniff(body: bytes) -> str:
    header = _first_line(body)
    return max(DELIMITERS, key=header.count)


def looks_like(body: bytes) -> bool:
    """A header line with a delimiter, and not JSON, XML, EDI or binary data."""
    if CONTROL_BYTES.search(body[:8192]):
        return False
    header = _first_line(body).lstrip()
    if not header or header[0] in "{[<" or header[:3] in ("ISA", "UNA", "UNB"):
        return False
    return header.count(_sniff(body)) >= 1


def _header_key(name: str) -> str:
    """How a configured column is compared with the header: case and spaces do not matter."""
    return "".join(name.split()).casefold()


def _header(body: bytes, config: Config) -> list[str] | None:
    """The first non-blank record, or None when the file has none or is not text."""
    head = body[:65536]
    try:
        text = head.decode(config.encoding)
    except UnicodeDecodeError as exc:
        if len(body) <= len(head) or exc.start < len(head) - 4:  # unless a character is cut by the slice
            return None
        text = head[: exc.start].decode(config.encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=config.delimiter or _sniff(body))
    try:
        return next((record for record in reader if any(cell.strip() for cell in record)), None)
    except csv.Error:
        return None


def _needs(config: Config) -> list[str]:
    """The header names a channel's mapping requires: its configured columns, then the canonical
    names of the required fields it leaves to the header's own names."""
    fields = FEED_FIELDS[config.feed]
    configured = [config.columns[name] for name in fields if name in config.columns]
    optional = ("occurred_at",) if config.feed == "inventory_snapshot" else ()
    defaults = [name for name in REQUIRED[config.feed] if name not in config.columns and name not in optional]
    return [*configured, *defaults]


def channel_matching(body: bytes, mappings: Mapping[str, Mapping[str, Any]], *, partner: str | None = None) -> str:
    """The code of the channel (among ``mappings``: channel code -> its ``mapping_overrides``)
    whose CSV mapping the file's header row matches: every column it requires is in the header
    (configured names ignoring case and spaces, the others by their canonical names). When several
    match, the one reading the most columns wins, then the one with the most configured columns,
    then the first code in alphabetical order. ParseError naming each channel's columns and the
    header read when none does."""
    matches: list[tuple[int, int, str]] = []
    header: list[str] | None = None
    needs: list[str] = []
    for code in sorted(mappings):
        try:
            config = _config(ParseContext(mapping=dict(mappings[code])))
        except ParseError as exc:
            needs.append(f"{code} (not usable: {exc})")
            continue
        record = _header(body, config)
        header = header or record
        needs.append(f"{code} ({config.feed}: {', '.join(_needs(config))})")
        if record is None:
            continue
        try:
            found = _columns(record, config)
        except ParseError:
            continue
        matches.append((-len(found), -len(config.columns), code))
    if matches:
        return min(matches)[2]
    read = ", ".join(name.strip() for name in header) if header else shown(_first_line(body), 200)
    whose = f"partner {partner}'s" if partner else "the"
    raise ParseError(
        f"the header row matches none of {whose} CSV channels: {'; '.join(needs) or 'there are none'}; "
        f"header read: {read}"
    )


def _columns(header: list[str], config: Config) -> dict[str, int]:
    """Canonical field -> column index, from the channel's columns or the header's own names."""
    names = [name.strip() for name in header]
    by_key = {code_key(name): index for index, name in enumerate(names) if name}
    by_header_key = {_header_key(name): index for index, name in reversed(list(enumerate(names))) if name}
    found: dict[str, int] = {}
    for name in FEED_FIELDS[config.feed]:
        configured = config.columns.get(name)
        if configured is not None:
            if configured.strip() in names:
                found[name] = names.index(configured.strip())
            elif _header_key(configured) in by_header_key:
                found[name] = by_header_key[_header_key(configured)]
            else:
                raise ParseError(f"line 1: column {configured!r} (for {name}) is not in the header: {', '.join(names)}")
            continue
        index = next((by_key[key] for key in (name, *ALIASES.get(name, ())) if key in by_key), None)
        if index is not None:
            found[name] = index
    missing = [name for name in REQUIRED[config.feed] if name not in found]
    if "occurred_at" in missing and config.feed == "inventory_snapshot":
        missing.remove("occurred_at")
    if missing:
        raise ParseError(
            f"line 1: the header has no column for {', '.join(missing)} "
            f'(set mapping_overrides["csv"]["columns"]); header: {", ".join(names)}'
        )
    return found


def _rows(body: bytes, config: Config) -> Iterator[Row]:
    delimiter = config.delimiter or _sniff(body)
    stream = io.TextIOWrapper(io.BytesIO(body), encoding=config.encoding, newline="")
    reader = csv.reader(stream, delimiter=delimiter)
    columns: dict[str, int] | None = None
    names: list[str] = []
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            if columns is None:
                names = [name.strip() for name in record]
                columns = _columns(record, config)
                continue
            cells = {name: record[index].strip() for name, index in columns.items() if index < len(record)}
            yield Row(
                line=reader.line_num,
                cells=cells,
                headers={name: names[index] for name, index in columns.items()},
                raw=dict(zip(names, (cell.strip() for cell in record), strict=False)),
            )
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"line {_bad_text_line(body, config.encoding)}: not {config.encoding} text "
            "(set mapping_overrides['csv']['encoding'])"
        ) from exc
    except csv.Error as exc:
        raise ParseError(f"line {reader.line_num}: {exc}") from exc
    if columns is None:
        raise ParseError("the file is empty: no header line")


def _bad_text_line(body: bytes, encoding: str) -> int:
    """The line of the first byte that ``encoding`` cannot decode (the stream decodes in chunks)."""
    try:
        body.decode(encoding)
    except UnicodeDecodeError as exc:
        return body.count(b"\n", 0, exc.start) + 1
    return 1


def _time(row: Row, name: str, zone: ZoneInfo, config: Config) -> When:
    value = row.required(name)
    try:
        return read_time(value, zone, config.time_format)
    except ValueError as exc:
        raise RowError(f"column {row.headers[name]!r}: {exc}") from exc


def _quantity(row: Row) -> Decimal:
    value = row.required("quantity")
    try:
        quantity = Decimal(value.replace(",", ".") if value.count(",") == 1 and "." not in value else value)
    except InvalidOperation:
        quantity = Decimal("NaN")
    if not quantity.is_finite():
        raise RowError(f"column {row.headers['quantity']!r}: {shown(value)} is not a number")
    return quantity


def _line(row: Row) -> EventLine:
    try:
        return EventLine(sku=row.required("sku"), quantity=_quantity(row), uom=row.value("uom") or "EA")
    except ValidationError as exc:
        problem = exc.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else "line"
        raise RowError(f"column {row.headers.get(name, name)!r}: {problem['msg']}") from exc


# --- shipment status -------------------------------------------------------------------------


def _shipment_tracker(row: Row, zone: ZoneInfo, config: Config) -> Tracker:
    when = _time(row, "occurred_at", zone, config)
    estimate = _time(row, "estimated_delivery", zone, config) if row.value("estimated_delivery") else None
    return Tracker(
        tracking_number=row.required("tracking"),
        carrier=row.value("carrier"),
        estimated_delivery=estimate,
        updated_at=when,
        references=[(kind, row.value(name)) for name, kind in REFERENCE_FIELDS.items() if row.value(name)],
        checkpoints=[
            Checkpoint(
                time=when,
                codes=(row.required("status"),),
                message=row.value("message"),
                location=location(
                    **{("name" if name == "location" else name): row.value(name) for name in PLACE_FIELDS}
                ),
                raw=row.raw,
            )
        ],
    )


def _shipment_events(
    rows: Iterator[Row], context: ParseContext, config: Config, report: Report
) -> Iterator[CanonicalEvent]:
    mapper = TrackingMapper("csv", GENERIC_STATUSES, context, overrides=config.status_codes, document=report.document)
    for row in rows:
        try:
            tracker = _shipment_tracker(row, mapper.zone, config)
        except RowError as exc:
            report.row(row.line, str(exc))
            continue
        yield from mapper.events(tracker)


# --- inventory snapshot ----------------------------------------------------------------------


@dataclass
class Snapshot:
    """One warehouse's stock at one time. Its lines are kept as (sku, quantity, unit) until its
    events are made, a tenth of the memory of as many line objects on a 100,000-row file."""

    warehouse: str | None
    when: When
    lines: list[tuple[str, Decimal, str]] = field(default_factory=list)

    def add(self, line: EventLine) -> None:
        self.lines.append((line.sku, line.quantity, line.uom))

    def event_lines(self, start: int, stop: int) -> list[EventLine]:
        """Lines ``start`` to ``stop``, validated when they were read."""
        return [EventLine.model_construct(sku=s, quantity=q, uom=u) for s, q, u in self.lines[start:stop]]


def _snapshot_time(row: Row, context: ParseContext, zone: ZoneInfo, config: Config) -> When:
    if "occurred_at" in row.headers:
        return _time(row, "occurred_at", zone, config)
    if context.received_at is None:
        raise ParseError("the snapshot has no time: add a snapshot_at column (mapping csv.columns.occurred_at)")
    received = context.received_at
    return When(received if received.tzinfo else received.replace(tzinfo=zone))


def _snapshot_events(snapshot: Snapshot, context: ParseContext) -> Iterator[CanonicalEvent]:
    parts = range(0, len(snapshot.lines), MAX_LINES_PER_EVENT)
    # The JSON of every line, written line by line (the text ``json.dumps`` of the whole list gives).
    digest = "[" + ", ".join(json.dumps([sku, str(quantity), uom]) for sku, quantity, uom in snapshot.lines) + "]"
    for number, start in enumerate(parts, start=1):
        attributes: dict[str, Any] = {"warehouse": snapshot.warehouse, "feed": "csv"}
        if len(parts) > 1:
            attributes.update(part=number, parts=len(parts))
        if snapshot.when.assumed:
            attributes["time_zone_assumed"] = True
        label = snapshot.warehouse or ""
        yield CanonicalEvent(
            event_id=event_id(
                "csv-inventory", context.partner, label, snapshot.when.at.isoformat(), str(number), digest
            ),
            kind=EventKind.INVENTORY_SNAPSHOT,
            occurred_at=snapshot.when.at,
            lines=snapshot.event_lines(start, start + MAX_LINES_PER_EVENT),
            attributes={name: value for name, value in attributes.items() if value is not None},
        )


def _inventory_events(
    rows: Iterator[Row], context: ParseContext, config: Config, report: Report
) -> Iterator[CanonicalEvent]:
    zone = zone_of(context)
    snapshots: dict[tuple[str | None, Any], Snapshot] = {}
    for row in rows:
        try:
            when = _snapshot_time(row, context, zone, config)
            line = _line(row)
        except RowError as exc:
            report.row(row.line, str(exc))
            continue
        warehouse = row.value("warehouse") or context.partner
        snapshots.setdefault((warehouse, when.at), Snapshot(warehouse, when)).add(line)
    for snapshot in snapshots.values():
        yield from _snapshot_events(snapshot, context)


# --- order release ---------------------------------------------------------------------------


@dataclass
class Release:
    order: str
    po: str
    warehouse: str
    when: When
    lines: list[EventLine] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)


def _release_event(release: Release, context: ParseContext) -> CanonicalEvent:
    attributes: dict[str, Any] = {"feed": "csv"}
    if release.warehouse:
        attributes["warehouse"] = release.warehouse
    if release.when.assumed:
        attributes["time_zone_assumed"] = True
    references = [{"kind": ReferenceKind.ORDER, "value": release.order}]
    if release.po:
        references.append({"kind": ReferenceKind.PO, "value": release.po})
    return CanonicalEvent(
        event_id=event_id("csv-release", context.partner, release.order[:60], release.po, release.when.at.isoformat()),
        kind=EventKind.ORDER_RELEASED,
        occurred_at=release.when.at,
        references=references,
        lines=release.lines[:MAX_LINES_PER_EVENT],
        attributes=attributes,
        raw=raw_text(release.rows),
    )


def _release_events(
    rows: Iterator[Row], context: ParseContext, config: Config, report: Report
) -> Iterator[CanonicalEvent]:
    zone = zone_of(context)
    releases: dict[tuple[str, str, str, Any], Release] = {}
    for row in rows:
        try:
            order, when = row.required("order"), _time(row, "occurred_at", zone, config)
            line = _line(row) if row.value("sku") else None
        except RowError as exc:
            report.row(row.line, str(exc))
            continue
        po, warehouse = row.value("po"), row.value("warehouse")
        release = releases.setdefault((order, po, warehouse, when.at), Release(order, po, warehouse, when))
        release.rows.append(row.raw)
        if line is not None:
            release.lines.append(line)
    for release in releases.values():
        if len(release.lines) > MAX_LINES_PER_EVENT:
            report.document.warnings.append(f"order {release.order}: only the first {MAX_LINES_PER_EVENT} lines kept")
        yield _release_event(release, context)


FeedReader = Callable[[Iterator[Row], ParseContext, Config, Report], Iterator[CanonicalEvent]]
FEEDS: dict[str, FeedReader] = {
    "shipment_status": _shipment_events,
    "inventory_snapshot": _inventory_events,
    "order_release": _release_events,
}


def iter_parse(body: bytes, context: ParseContext, document: ParsedDocument) -> Iterator[CanonicalEvent]:
    """The events of the file one by one; warnings and unmapped codes go to ``document``."""
    config = _config(context)
    report = Report(document)
    yield from FEEDS[config.feed](_rows(body, config), context, config, report)
    report.close()


@collection_paused()
def parse(body: bytes, context: ParseContext) -> ParsedDocument:
    document = ParsedDocument()
    document.events.extend(iter_parse(body, context, document))
    if not document.events:
        problems = "; ".join(document.warnings[:5]) or "the file has a header and no rows"
        raise ParseError(f"no row could be read: {problems}")
    return document
