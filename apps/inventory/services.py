"""Inventory events into the ledger, and positions kept from it one event at a time.

A position's view (on hand or book) is a count plus the movements reported after it:

- a snapshot line counts its position as of its time, unless a later count (or, at the same time,
  a reported line beating an omission, then the greater event id) already did; the movements after
  the new count are read back from the ledger;
- a full snapshot first counts zero every position of its warehouse it is newer than (the lines it
  names then beat that zero at the same time), and becomes the count of positions that appear later;
- a movement adds to its position when it happened after the position's count.

So a position is a function of the set of events, whatever their arrival order. The ledger's
unique key makes a line apply once even when two workers apply the same event.
A warehouse's feed rows (``StockFeed``) are locked while its events apply, so its positions are
written by one transaction at a time.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Count, F, Model, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.inventory.models import (
    Allocation,
    CountRank,
    EntryKind,
    InventoryPosition,
    LedgerEntry,
    StockAccuracy,
    StockFeed,
    StockView,
)
from apps.inventory.selectors import positions
from apps.partners.models import Partner
from apps.timeline.bulk import delete_rows
from apps.timeline.events import EventKind, normalize_reference
from apps.timeline.models import Milestone, Order, OrderLine

BATCH_SIZE = 500
INVENTORY_KINDS = frozenset({EventKind.INVENTORY_SNAPSHOT, EventKind.INVENTORY_ADJUSTED})
FULL = "full"  # attributes.snapshot of a snapshot listing every SKU the warehouse holds
Key = tuple[str, str]  # (sku, uom)


@dataclass(frozen=True)
class ViewColumns:
    """The columns of one view of a position."""

    quantity: str
    counted_quantity: str
    counted_at: str
    counted_rank: str
    counted_event: str
    moved: str
    as_of: str

    @classmethod
    def prefixed(cls, prefix: str) -> "ViewColumns":
        return cls(*(prefix + column.name for column in fields(cls)))

    @property
    def names(self) -> list[str]:
        return [getattr(self, column.name) for column in fields(self)]


COLUMNS = {StockView.ON_HAND: ViewColumns.prefixed(""), StockView.BOOK: ViewColumns.prefixed("book_")}


@dataclass(frozen=True)
class Report:
    """One inventory event, as the ledger reads it."""

    warehouse_id: int
    view: str
    kind: str
    occurred_at: datetime
    event_id: str
    full: bool
    reason: str
    source_partner_id: int | None
    source_message_id: int | None
    lines: list[dict[str, Any]]


def inventory_apply(*, milestones: Iterable[Milestone]) -> None:
    """Book the inventory milestones of an apply into the ledger and their positions.

    Runs inside the apply's transaction; costs what the events hold, never the warehouse's history.
    Warehouses are locked in the order of their ids, so two applies never wait on each other.
    """
    reports = _reports([m for m in milestones if m.kind in INVENTORY_KINDS])
    for report in sorted(reports, key=attrgetter("warehouse_id")):
        feeds = _locked_feeds(report.warehouse_id)
        entries = _ledger_insert(report)
        if report.kind == EntryKind.SNAPSHOT:
            _count(report, feeds, entries)
        else:
            _move(report, feeds, entries)


def _reports(milestones: list[Milestone]) -> Iterator[Report]:
    """Each milestone's warehouse (``attributes.warehouse``, else its sender) and view: book stock
    when an ERP sent it, on hand otherwise."""
    attributes = [(m, (m.payload or {}).get("attributes") or {}) for m in milestones]
    codes = {_warehouse_code(m, attrs) for m, attrs in attributes}
    ids = dict(Partner.objects.filter(code__in=codes).values_list("code", "id"))
    for milestone, attrs in attributes:
        sender = milestone.source_partner
        reason = attrs.get("reason") or attrs.get("reason_code") or ""
        yield Report(
            warehouse_id=ids[_warehouse_code(milestone, attrs)],
            view=StockView.BOOK if sender and sender.kind == Partner.Kind.ERP else StockView.ON_HAND,
            kind=EntryKind.SNAPSHOT if milestone.kind == EventKind.INVENTORY_SNAPSHOT else EntryKind.MOVEMENT,
            occurred_at=milestone.occurred_at,
            event_id=milestone.event_id,
            full=attrs.get("snapshot") == FULL,
            reason=str(reason)[:200],
            source_partner_id=milestone.source_partner_id,
            source_message_id=milestone.source_message_id,
            lines=milestone.lines,
        )


def _warehouse_code(milestone: Milestone, attributes: dict[str, Any]) -> str:
    """As the apply checked it: ``attributes.warehouse``, else the sender."""
    return attributes.get("warehouse") or milestone.source_partner.code


def _locked_feeds(warehouse_id: int) -> dict[str, StockFeed]:
    """The warehouse's two feeds, locked (in one order) until the apply commits."""
    feeds = StockFeed.objects.select_for_update().filter(warehouse_id=warehouse_id).order_by("view")
    found = {feed.view: feed for feed in feeds}
    if len(found) < len(StockView.values):
        StockFeed.objects.bulk_create(
            [StockFeed(warehouse_id=warehouse_id, view=view) for view in StockView.values], ignore_conflicts=True
        )
        found = {feed.view: feed for feed in feeds.all()}
    return found


LEDGER_COLUMNS = [
    "warehouse_id",
    "sku",
    "uom",
    "view",
    "kind",
    "quantity",
    "occurred_at",
    "reason",
    "event_id",
    "line",
    "source_partner_id",
    "source_message_id",
    "recorded_at",
]


def _ledger_insert(report: Report) -> dict[Key, Decimal]:
    """Write the report's lines; return what the new ones (not written before) say, by position.

    ``ON CONFLICT DO NOTHING RETURNING``: a line another transaction wrote first is not returned,
    so it is not applied twice.
    """
    ops = connection.ops
    at = ops.adapt_datetimefield_value(report.occurred_at)
    now = ops.adapt_datetimefield_value(timezone.now())
    rows = [
        (
            report.warehouse_id,
            normalize_reference(line["sku"]),
            line.get("uom") or "EA",
            report.view,
            report.kind,
            Decimal(line["quantity"]),
            at,
            report.reason,
            report.event_id,
            number,
            report.source_partner_id,
            report.source_message_id,
            now,
        )
        for number, line in enumerate(report.lines)
    ]
    by_key: dict[Key, Decimal] = defaultdict(Decimal)
    for (number,) in _insert_rows(LedgerEntry, LEDGER_COLUMNS, rows, "ON CONFLICT DO NOTHING RETURNING line"):
        row = rows[number]
        by_key[(row[1], row[2])] += row[5]
    return by_key


def _insert_rows(model: type[Model], columns: list[str], rows: list[tuple], tail: str) -> list[tuple]:
    """``INSERT`` of ``rows`` (values ready for the database) followed by ``tail``; the rows it
    returns. Plain SQL: the ORM's preparation of every field of every row costs more than the
    database does on a 5,000-line snapshot. PostgreSQL gets one array a column (``unnest``), so a
    statement's size does not grow with its rows; SQLite gets ``BATCH_SIZE`` rows a statement."""
    if not rows:
        return []
    ops = connection.ops
    table = ops.quote_name(model._meta.db_table)
    names = ", ".join(ops.quote_name(column) for column in columns)
    if connection.vendor == "postgresql":
        fields = {field.attname: field for field in model._meta.concrete_fields}
        arrays = ", ".join(f"%s::{fields[column].db_type(connection)}[]" for column in columns)
        unnest = f"SELECT * FROM unnest({arrays})"  # noqa: S608
        statements = [(unnest, [list(values) for values in zip(*rows, strict=True)])]
    else:
        placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
        statements = [
            (f"VALUES {', '.join([placeholders] * len(chunk))}", [value for row in chunk for value in row])
            for chunk in (rows[start : start + BATCH_SIZE] for start in range(0, len(rows), BATCH_SIZE))
        ]
    returned: list[tuple] = []
    with connection.cursor() as cursor:
        for source, params in statements:
            # Table, column and type names are the model's own; every value is a parameter.
            cursor.execute(f"INSERT INTO {table} ({names}) {source} {tail}", params)  # noqa: S608
            if "RETURNING" in tail:
                returned += cursor.fetchall()
    return returned


def _rank(position: InventoryPosition, cols: ViewColumns) -> tuple[datetime, int, str] | None:
    at = getattr(position, cols.counted_at)
    return None if at is None else (at, getattr(position, cols.counted_rank), getattr(position, cols.counted_event))


def _positions(report: Report, keys: Iterable[Key], feeds: dict[str, StockFeed]) -> dict[Key, InventoryPosition]:
    """The positions of ``keys``: those known, and new ones counted, in each view, from its feed's
    last full snapshot (zero as of then) when there was one."""
    keys = set(keys)
    found = InventoryPosition.objects.filter(warehouse_id=report.warehouse_id, sku__in={sku for sku, _ in keys})
    positions = {(p.sku, p.uom): p for p in found if (p.sku, p.uom) in keys}
    for sku, uom in keys - set(positions):
        position = InventoryPosition(warehouse_id=report.warehouse_id, sku=sku, uom=uom)
        for view, feed in feeds.items():
            if feed.full_snapshot_at is not None:
                rank = (feed.full_snapshot_at, CountRank.OMITTED, feed.full_snapshot_event)
                _set_count(position, COLUMNS[view], Decimal(0), rank)
                _settle(position, COLUMNS[view], feed.full_snapshot_at)
        positions[(sku, uom)] = position
    return positions


def _set_count(position: InventoryPosition, cols: ViewColumns, quantity: Decimal, rank: tuple) -> None:
    at, order, event = rank
    setattr(position, cols.counted_quantity, quantity)
    setattr(position, cols.counted_at, at)
    setattr(position, cols.counted_rank, order)
    setattr(position, cols.counted_event, event)


def _settle(position: InventoryPosition, cols: ViewColumns, at: datetime) -> None:
    """The view's quantity from its count and movements; its latest report time."""
    total = getattr(position, cols.counted_quantity) + getattr(position, cols.moved)
    setattr(position, cols.quantity, total)
    latest = getattr(position, cols.as_of)
    setattr(position, cols.as_of, at if latest is None or at > latest else latest)


def _count(report: Report, feeds: dict[str, StockFeed], counted: dict[Key, Decimal]) -> None:
    cols = COLUMNS[report.view]
    rank = (report.occurred_at, CountRank.REPORTED, report.event_id)
    _note_snapshot(feeds[report.view], report)
    if report.full:
        _zero_omitted(report, cols)
    if not counted:
        return
    positions = _positions(report, counted, feeds)
    moved_after = _moved_after(report, {sku for sku, _ in counted})
    changed = []
    for key, quantity in counted.items():
        position = positions[key]
        current = _rank(position, cols)
        if current is not None and current >= rank:
            if position.pk is None:  # new, and a later full snapshot counted it zero
                _settle(position, cols, report.occurred_at)
                changed.append(position)
            continue
        _set_count(position, cols, quantity, rank)
        setattr(position, cols.moved, moved_after.get(key, Decimal(0)))
        _settle(position, cols, report.occurred_at)
        changed.append(position)
    _save(changed, cols)


def _move(report: Report, feeds: dict[str, StockFeed], moved: dict[Key, Decimal]) -> None:
    if not moved:
        return
    cols = COLUMNS[report.view]
    positions = _positions(report, moved, feeds)
    for key, quantity in moved.items():
        position = positions[key]
        counted_at = getattr(position, cols.counted_at)
        if counted_at is None or report.occurred_at > counted_at:
            setattr(position, cols.moved, getattr(position, cols.moved) + quantity)
        _settle(position, cols, report.occurred_at)
    _save(list(positions.values()), cols)


POSITION_KEY = ["warehouse_id", "sku", "uom"]


def _save(positions: list[InventoryPosition], cols: ViewColumns) -> None:
    """Insert, or update this view's columns of, ``positions``."""
    if not positions:
        return
    ops = connection.ops
    columns = [*POSITION_KEY, *COLUMNS[StockView.ON_HAND].names, *COLUMNS[StockView.BOOK].names, "updated_at"]
    now = ops.adapt_datetimefield_value(timezone.now())
    rows = [
        (
            *(getattr(p, name) for name in POSITION_KEY),
            *(ops.adapt_datetimefield_value(v) if isinstance(v, datetime) else v for v in _view_values(p)),
            now,
        )
        for p in positions
    ]
    quote = ops.quote_name
    updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in [*cols.names, "updated_at"])
    conflict = ", ".join(quote(name) for name in POSITION_KEY)
    _insert_rows(InventoryPosition, columns, rows, f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")


def _view_values(position: InventoryPosition) -> list[Any]:
    return [getattr(position, name) for view in (StockView.ON_HAND, StockView.BOOK) for name in COLUMNS[view].names]


def _movements_after(warehouse: Any, view: str, after: datetime) -> Any:
    return LedgerEntry.objects.filter(warehouse_id=warehouse, view=view, kind=EntryKind.MOVEMENT, occurred_at__gt=after)


def _moved_after(report: Report, skus: set[str]) -> dict[Key, Decimal]:
    rows = (
        _movements_after(report.warehouse_id, report.view, report.occurred_at)
        .filter(sku__in=skus)
        .values_list("sku", "uom")
        .annotate(total=Sum("quantity"))
    )
    return {(sku, uom): total for sku, uom, total in rows}


def _zero_omitted(report: Report, cols: ViewColumns) -> None:
    """Count zero, as of a full snapshot, every position of its warehouse counted before it.

    Positions counted at the same time are left alone: another part of the same snapshot named
    them, or zeroed them already (the same zero). So each part of a 20-part snapshot updates only
    what no earlier-applied part did, not the whole warehouse again."""
    at, event = report.occurred_at, report.event_id
    older = Q(**{f"{cols.counted_at}__isnull": True}) | Q(**{f"{cols.counted_at}__lt": at})
    moved = Coalesce(
        Subquery(
            _movements_after(OuterRef("warehouse_id"), report.view, at)
            .filter(sku=OuterRef("sku"), uom=OuterRef("uom"))
            .order_by()
            .values("sku")
            .annotate(total=Sum("quantity"))
            .values("total")
        ),
        Value(Decimal(0)),
    )
    InventoryPosition.objects.filter(older, warehouse_id=report.warehouse_id).update(
        **{
            cols.counted_quantity: Decimal(0),
            cols.counted_at: at,
            cols.counted_rank: CountRank.OMITTED,
            cols.counted_event: event,
            cols.moved: moved,
            cols.quantity: moved,
            cols.as_of: Case(When(**{f"{cols.as_of}__gt": at}, then=F(cols.as_of)), default=Value(at)),
        }
    )


def _note_snapshot(feed: StockFeed, report: Report) -> None:
    changed = []
    if feed.last_snapshot_at is None or report.occurred_at > feed.last_snapshot_at:
        feed.last_snapshot_at = report.occurred_at
        changed.append("last_snapshot_at")
    full_rank = (feed.full_snapshot_at, feed.full_snapshot_event) if feed.full_snapshot_at else None
    if report.full and (full_rank is None or (report.occurred_at, report.event_id) > full_rank):
        feed.full_snapshot_at, feed.full_snapshot_event = report.occurred_at, report.event_id
        changed += ["full_snapshot_at", "full_snapshot_event"]
    if changed:
        feed.save(update_fields=changed)


# --- allocations --------------------------------------------------------------------------------


def allocations_refresh(*, order_ids: Iterable[int]) -> None:
    """What the touched orders hold: the lines of those released (or allocated) and not shipped
    nor cancelled, at the warehouse their release or allocation names."""
    ids = set(order_ids)
    if not ids:
        return
    delete_rows(Allocation.objects.filter(order_id__any=ids))
    open_orders = Order.objects.filter(
        Q(released_at__isnull=False) | Q(allocated_at__isnull=False),
        id__any=ids,
        shipped_at__isnull=True,
        cancelled_at__isnull=True,
    )
    lines = list(OrderLine.objects.filter(order__in=open_orders).values_list("order_id", "sku", "uom", "quantity"))
    if not lines:
        return
    warehouses = _allocating_warehouses({order_id for order_id, *_ in lines})
    Allocation.objects.bulk_create(
        [
            Allocation(
                order_id=order_id,
                sku=normalize_reference(sku),
                uom=uom,
                quantity=quantity,
                warehouse_id=warehouses.get(order_id),
            )
            for order_id, sku, uom, quantity in lines
        ],
        ignore_conflicts=True,
        batch_size=BATCH_SIZE,
    )


def _allocating_warehouses(order_ids: set[int]) -> dict[int, int]:
    """Per order, the warehouse its release names (``attributes.warehouse``), else the one its
    allocation names or came from; the smallest code when several do."""
    rows = Milestone.objects.filter(
        order_id__any=order_ids, kind__in=[EventKind.ORDER_RELEASED, EventKind.ORDER_ALLOCATED]
    ).values_list("order_id", "kind", "payload__attributes__warehouse", "source_partner__code", "source_partner__kind")
    candidates: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for order_id, kind, named, sender, sender_kind in rows:
        if isinstance(named, str) and named:
            candidates[order_id].append((0 if kind == EventKind.ORDER_RELEASED else 1, named))
        elif kind == EventKind.ORDER_ALLOCATED and sender_kind == Partner.Kind.WAREHOUSE:
            candidates[order_id].append((2, sender))
    chosen = {order_id: min(found)[1] for order_id, found in candidates.items()}
    ids = dict(Partner.objects.filter(code__in=set(chosen.values())).values_list("code", "id"))
    return {order_id: ids[code] for order_id, code in chosen.items() if code in ids}


# --- catching up ------------------------------------------------------------------------------

REBUILD_BATCH = 20  # milestones a transaction: up to 100,000 lines


def ledger_catch_up(*, batch: int = REBUILD_BATCH) -> int:
    """Book the stored inventory milestones the ledger does not hold yet (those applied before
    this app, or restored from a backup); returns how many. Safe to run again."""
    booked = 0
    after = 0
    stock = Milestone.objects.filter(kind__in=INVENTORY_KINDS).select_related("source_partner").order_by("pk")
    while chunk := list(stock.filter(pk__gt=after)[:batch]):
        after = chunk[-1].pk
        known = set(
            LedgerEntry.objects.filter(event_id__in={m.event_id for m in chunk}, line=0).values_list(
                "source_partner_id", "event_id"
            )
        )
        todo = [m for m in chunk if (m.source_partner_id, m.event_id) not in known]
        with transaction.atomic():
            inventory_apply(milestones=todo)
        booked += len(todo)
    return booked


# --- accuracy -----------------------------------------------------------------------------------


def stock_accuracy_record(*, now: datetime) -> int:
    """Measure each warehouse's accuracy and snapshot freshness now, as today's row (a later
    measurement the same day replaces it); returns how many warehouses were measured."""
    compared = {
        row["warehouse_id"]: row
        for row in positions()
        .filter(quantity__isnull=False, book_quantity__isnull=False)
        .order_by()
        .values("warehouse_id")
        .annotate(compared=Count("id"), within=Count("id", filter=Q(mismatch=False)))
    }
    feeds = StockFeed.objects.filter(view=StockView.ON_HAND, last_snapshot_at__isnull=False)
    last = {feed.warehouse_id: (feed.last_snapshot_at, feed.last_snapshot_at + feed.cadence < now) for feed in feeds}
    rows = [
        StockAccuracy(
            day=now.date(),
            warehouse_id=warehouse_id,
            compared=compared.get(warehouse_id, {}).get("compared", 0),
            within=compared.get(warehouse_id, {}).get("within", 0),
            last_snapshot_at=last.get(warehouse_id, (None, False))[0],
            snapshot_late=last.get(warehouse_id, (None, False))[1],
            measured_at=now,
        )
        for warehouse_id in set(compared) | set(last)
    ]
    StockAccuracy.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["day", "warehouse"],
        update_fields=["compared", "within", "last_snapshot_at", "snapshot_late", "measured_at"],
    )
    return len(rows)
