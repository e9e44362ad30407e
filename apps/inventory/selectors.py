"""Reading stock: positions with their difference, allocation and available to promise, a SKU's
ledger, and the conditions the inventory exception rules look for."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Abs, Coalesce, Replace, Upper

from apps.inventory.models import (
    Allocation,
    EntryKind,
    InventoryPosition,
    LedgerEntry,
    StockAccuracy,
    StockFeed,
    StockTolerance,
    StockView,
)
from apps.timeline.events import normalize_reference
from apps.timeline.models import Shipment, ShipmentLine

QUANTITY = DecimalField(max_digits=16, decimal_places=3)
ZERO = Value(Decimal(0), output_field=QUANTITY)
# Without a stock tolerance row, on hand may differ from book by this fraction of book (the stock
# mismatch rule's default tolerance; the rule's own setting applies to its cases).
DEFAULT_MISMATCH_PERCENT = Decimal("0.02")


def _allocated(*, assigned: bool) -> Coalesce:
    rows = Allocation.objects.filter(sku=OuterRef("sku"), uom=OuterRef("uom"))
    rows = rows.filter(warehouse_id=OuterRef("warehouse_id")) if assigned else rows.filter(warehouse__isnull=True)
    total = rows.order_by().values("sku").annotate(total=Sum("quantity")).values("total")
    return Coalesce(Subquery(total, output_field=QUANTITY), ZERO)


def _tolerance(field: str, default: Decimal) -> Coalesce:
    """The most specific tolerance row's ``field`` for the outer position."""
    specific = Case(When(sku="", then=Value(0)), default=Value(2)) + Case(
        When(warehouse__isnull=True, then=Value(0)), default=Value(1)
    )
    rows = (
        StockTolerance.objects.filter(
            Q(warehouse_id=OuterRef("warehouse_id")) | Q(warehouse__isnull=True),
            Q(sku=OuterRef("sku")) | Q(sku=""),
        )
        .annotate(specific=specific)
        .order_by("-specific")
        .values(field)[:1]
    )
    return Coalesce(Subquery(rows, output_field=QUANTITY), Value(default, output_field=QUANTITY))


def positions(*, default_percent: Decimal = DEFAULT_MISMATCH_PERCENT) -> QuerySet[InventoryPosition]:
    """Every position with ``difference`` (on hand - book), ``allocated`` (to its warehouse),
    ``unassigned`` (allocated to no warehouse, SKU-wide), ``atp`` (on hand - allocated),
    ``units_differ`` (the SKU is also counted in another unit there) and ``mismatch`` (the
    difference beyond its tolerance: more than its units and more than its percent of book)."""
    other_unit = InventoryPosition.objects.filter(warehouse_id=OuterRef("warehouse_id"), sku=OuterRef("sku")).exclude(
        uom=OuterRef("uom")
    )
    return (
        InventoryPosition.objects.select_related("warehouse")
        .annotate(
            difference=ExpressionWrapper(F("quantity") - F("book_quantity"), output_field=QUANTITY),
            allocated=_allocated(assigned=True),
            unassigned=_allocated(assigned=False),
            units_differ=Exists(other_unit),
            tolerance_units=_tolerance("units", Decimal(0)),
            tolerance_percent=_tolerance("percent", default_percent),
        )
        .annotate(
            gap=Abs(F("difference")),
            atp=ExpressionWrapper(F("quantity") - F("allocated"), output_field=QUANTITY),
        )
        .annotate(
            mismatch=Case(
                When(
                    gap__gt=F("tolerance_units"),
                    then=Case(
                        When(gap__gt=Abs(F("book_quantity")) * F("tolerance_percent"), then=Value(True)),
                        default=Value(False),
                    ),
                ),
                default=Value(False),
                output_field=BooleanField(),
            )
        )
    )


def position_search(
    *, sku: str = "", warehouse: str = "", mismatch: bool = False, default_percent: Decimal = DEFAULT_MISMATCH_PERCENT
) -> QuerySet[InventoryPosition]:
    """Positions whose SKU starts with ``sku`` (case and spaces ignored), at the warehouse coded
    ``warehouse``, only mismatches if asked; by warehouse, SKU and unit."""
    found = positions(default_percent=default_percent)
    if sku:
        found = found.filter(sku__startswith=normalize_reference(sku))
    if warehouse:
        found = found.filter(warehouse__code=warehouse)
    if mismatch:
        found = found.filter(mismatch=True)
    return found.order_by("warehouse__code", "sku", "uom")


@dataclass(frozen=True)
class HistoryPoint:
    entry: LedgerEntry
    level: Decimal | None  # on hand after the entry, when a count before it in the window tells


HISTORY_LIMIT = 200


def position_history(position: InventoryPosition, *, limit: int = HISTORY_LIMIT) -> list[HistoryPoint]:
    """The position's latest ``limit`` ledger lines (both views), oldest first, each with the on-hand
    level it left: a count sets it, a later movement moves it; before the window's first count the
    level is unknown."""
    entries = list(
        LedgerEntry.objects.filter(warehouse_id=position.warehouse_id, sku=position.sku, uom=position.uom)
        .select_related("source_partner")
        .order_by("-occurred_at", "-event_id", "-line")[:limit]
    )
    points, level, counted_at = [], None, None
    for entry in reversed(entries):
        if entry.view == StockView.ON_HAND:
            if entry.kind == EntryKind.SNAPSHOT:
                level, counted_at = entry.quantity, entry.occurred_at
            elif level is not None and entry.occurred_at > counted_at:
                level += entry.quantity
        points.append(HistoryPoint(entry, level if entry.view == StockView.ON_HAND else None))
    return points


# --- conditions for the exception rules ----------------------------------------------------------


def mismatched_positions(*, default_percent: Decimal, warehouse_id: int | None = None) -> QuerySet[InventoryPosition]:
    found = positions(default_percent=default_percent).filter(mismatch=True)
    return found.filter(warehouse_id=warehouse_id) if warehouse_id else found


def positions_over_promised(*, warehouse_id: int | None = None) -> QuerySet[InventoryPosition]:
    """Positions whose available to promise is below zero: more allocated than on hand."""
    found = positions().filter(atp__lt=0)
    return found.filter(warehouse_id=warehouse_id) if warehouse_id else found


def stale_feeds(*, now: datetime, grace: timedelta, warehouse_id: int | None = None) -> QuerySet[StockFeed]:
    """Warehouses' on-hand feeds whose next snapshot (the last one plus the cadence) is more than
    ``grace`` late; a feed that never sent a snapshot has no cadence to miss yet."""
    due = ExpressionWrapper(F("last_snapshot_at") + F("cadence"), output_field=DateTimeField())
    feeds = (
        StockFeed.objects.filter(view=StockView.ON_HAND, last_snapshot_at__isnull=False)
        .annotate(due_at=due)
        .filter(due_at__lt=now - grace)
        .select_related("warehouse")
    )
    return feeds.filter(warehouse_id=warehouse_id) if warehouse_id else feeds


def shipments_short_of_stock(shipments: QuerySet[Shipment] | list[int]) -> QuerySet[Shipment]:
    """Those of ``shipments`` whose ship notice took more of a SKU than its warehouse had: the
    warehouse's latest count before the ship time plus what it received since (movements in);
    its movements out are left aside, a pick reported for this very shipment among them. A SKU the
    warehouse never counted before is not judged.

    A few shipments are best named by their ids: through a subquery, the planner may judge
    every line ever shipped before it keeps theirs."""
    key = {
        "warehouse_id": OuterRef("shipment__warehouse_id"),
        "sku": Replace(Upper(OuterRef("sku")), Value(" "), Value("")),
        "uom": OuterRef("uom"),
        "view": StockView.ON_HAND,
    }
    shipped_at = OuterRef("shipment__manifested_at")
    counts = LedgerEntry.objects.filter(**key, kind=EntryKind.SNAPSHOT, occurred_at__lt=shipped_at).order_by(
        "-occurred_at", "-event_id"
    )
    received = (
        LedgerEntry.objects.filter(
            **key,
            kind=EntryKind.MOVEMENT,
            quantity__gt=0,
            occurred_at__gt=OuterRef("counted_at"),
            occurred_at__lt=shipped_at,
        )
        .order_by()
        .values("view")
        .annotate(total=Sum("quantity"))
        .values("total")
    )
    # Named by ids, they are also named on the shipment's side of the join: else the planner
    # hashes every shipment to join the lines to theirs.
    chosen = (
        Q(shipment_id__each=shipments, shipment__pk__each=shipments)
        if isinstance(shipments, list)
        else Q(shipment__in=shipments)
    )
    short = (
        ShipmentLine.objects.filter(chosen, shipment__warehouse__isnull=False)
        .annotate(
            counted_at=Subquery(counts.values("occurred_at")[:1]),
            counted=Subquery(counts.values("quantity")[:1], output_field=QUANTITY),
        )
        .filter(counted_at__isnull=False)
        .annotate(had=F("counted") + Coalesce(Subquery(received, output_field=QUANTITY), ZERO))
        .filter(had__lt=F("quantity"))
    )
    found = Shipment.objects.filter(id__any=shipments) if isinstance(shipments, list) else shipments
    return found.filter(id__in=short.values("shipment_id"))


@dataclass(frozen=True)
class AccuracyBoard:
    days: list[date]
    shares: list[float | None]  # every warehouse's positions together, a day
    latest: list[StockAccuracy]  # per warehouse, its last day in the period


def accuracy_board(*, start: date, end: date, warehouse_id: int | None = None) -> AccuracyBoard:
    """Inventory accuracy over ``start``..``end``: a row a warehouse and a day, a few hundred at most."""
    rows = StockAccuracy.objects.filter(day__gte=start, day__lte=end).select_related("warehouse").order_by("day")
    if warehouse_id:
        rows = rows.filter(warehouse_id=warehouse_id)
    totals: dict[date, list[int]] = {}
    latest: dict[int, StockAccuracy] = {}
    for row in rows:
        day = totals.setdefault(row.day, [0, 0])
        day[0] += row.within
        day[1] += row.compared
        latest[row.warehouse_id] = row
    days = sorted(totals)
    return AccuracyBoard(
        days=days,
        shares=[totals[d][0] / totals[d][1] if totals[d][1] else None for d in days],
        latest=sorted(latest.values(), key=lambda row: row.warehouse.code),
    )
