"""Projections: the current state of orders and shipments, computed from their milestones.

Every function here is a pure function of the *set* of milestones (ties broken by event id), so
the state never depends on the order events arrived in. A shipment's status is the furthest
milestone it reached: a late, older carrier event cannot move a delivered shipment back.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Model, Q

from apps.partners.models import Partner
from apps.timeline.events import CanonicalEvent, EventKind, normalize_reference
from apps.timeline.models import (
    InventoryPosition,
    Milestone,
    Order,
    OrderLine,
    OrderStage,
    Reference,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)

if TYPE_CHECKING:
    from apps.timeline.services import ApplyResult

BATCH_SIZE = 500
K = EventKind

SHIPMENT_STATUS_BY_KIND = {
    K.SHIPMENT_MANIFESTED: ShipmentStatus.MANIFESTED,
    K.SHIPMENT_TRACKING_ASSIGNED: ShipmentStatus.TRACKING_ASSIGNED,
    K.SHIPMENT_PICKED_UP: ShipmentStatus.PICKED_UP,
    K.SHIPMENT_IN_TRANSIT: ShipmentStatus.IN_TRANSIT,
    K.SHIPMENT_OUT_FOR_DELIVERY: ShipmentStatus.OUT_FOR_DELIVERY,
    K.SHIPMENT_DELIVERY_ATTEMPTED: ShipmentStatus.DELIVERY_ATTEMPTED,
    K.SHIPMENT_DELIVERED: ShipmentStatus.DELIVERED,
    K.SHIPMENT_POD_RECEIVED: ShipmentStatus.POD_RECEIVED,
}
SHIPMENT_STATUS_RANK = {status: rank for rank, status in enumerate(ShipmentStatus.values)}
# First time each milestone was reached.
SHIPMENT_FIRST_FIELDS = {
    K.SHIPMENT_MANIFESTED: "manifested_at",
    K.SHIPMENT_TRACKING_ASSIGNED: "tracking_assigned_at",
    K.SHIPMENT_PICKED_UP: "picked_up_at",
    K.SHIPMENT_IN_TRANSIT: "in_transit_at",
    K.SHIPMENT_OUT_FOR_DELIVERY: "out_for_delivery_at",
    K.SHIPMENT_DELIVERED: "delivered_at",
    K.SHIPMENT_POD_RECEIVED: "pod_at",
    K.SHIPMENT_DAMAGED: "damaged_at",
    K.SHIPMENT_REFUSED: "refused_at",
}
# Last time it happened: a second attempt or a new delay is what users need to see.
SHIPMENT_LAST_FIELDS = {K.SHIPMENT_DELIVERY_ATTEMPTED: "delivery_attempted_at", K.SHIPMENT_DELAYED: "delayed_at"}
CARRIER_KINDS = frozenset(SHIPMENT_FIRST_FIELDS) - {K.SHIPMENT_MANIFESTED, K.SHIPMENT_TRACKING_ASSIGNED} | {
    K.SHIPMENT_ETA_UPDATED,
    K.SHIPMENT_DELAYED,
    K.SHIPMENT_DELIVERY_ATTEMPTED,
    K.SHIPMENT_STATUS_UNMAPPED,
}
SHIPMENT_FIELDS = [
    "status",
    "carrier",
    "warehouse",
    "tracking_number",
    *SHIPMENT_FIRST_FIELDS.values(),
    *SHIPMENT_LAST_FIELDS.values(),
    "delay_reason",
    "estimated_delivery_at",
    "last_carrier_event_at",
]

ORDER_FIRST_FIELDS = {
    K.ORDER_CREATED: "ordered_at",
    K.ORDER_RELEASED: "released_at",
    K.ORDER_ALLOCATED: "allocated_at",
    K.ORDER_PICKED: "picked_at",
    K.ORDER_PACKED: "packed_at",
    K.ORDER_CANCELLED: "cancelled_at",
    K.INVOICE_GENERATED: "invoiced_at",
    K.INVOICE_POSTED: "posted_at",
}
ORDER_FIELDS = [
    "customer",
    "region",
    "promised_at",
    "currency",
    "total_amount",
    "stage",
    *ORDER_FIRST_FIELDS.values(),
    "shipped_at",
    "delivered_at",
    "pod_at",
    "last_event_at",
]

Key = tuple[datetime, str]


def save_fields(model: type[Model], objects: list[Model], fields: list[str]) -> None:
    """Write ``fields`` of loaded rows in one statement per batch.

    ``bulk_update`` builds a CASE expression per row and field, which dominates an apply of a few
    hundred orders; an upsert on the primary key writes the same values at a fraction of the cost.
    """
    model.objects.bulk_create(
        objects,
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=[*fields, "updated_at"],
        batch_size=BATCH_SIZE,
    )


def orders_of_shipments(shipment_ids: Iterable[int]) -> set[int]:
    ids = set(shipment_ids)
    if not ids:
        return set()
    through = Shipment.orders.through
    return set(through.objects.filter(shipment_id__in=ids).values_list("order_id", flat=True))


def recompute(*, order_ids: Iterable[int], shipment_ids: Iterable[int]) -> None:
    """Recompute shipments first (orders read them), then orders."""
    shipment_ids, order_ids = set(shipment_ids), set(order_ids)
    if shipment_ids:
        _recompute_shipments(shipment_ids)
    if order_ids:
        _recompute_orders(order_ids)


# --- shipments --------------------------------------------------------------------------------


def _recompute_shipments(ids: set[int]) -> None:
    rows = list(
        Milestone.objects.filter(shipment_id__in=ids)
        .order_by()
        .values(
            "shipment_id",
            "kind",
            "occurred_at",
            "event_id",
            "estimated_delivery_at",
            "source_partner_id",
            "source_partner__kind",
            "lines",
            "payload__attributes",
        )
    )
    by_shipment: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["occurred_at"], r["event_id"])):
        by_shipment[row["shipment_id"]].append(row)
    codes = {(row["payload__attributes"] or {}).get(name) for row in rows for name in ("carrier", "warehouse")}
    partners = {p.code: p.id for p in Partner.objects.filter(code__in={c for c in codes if isinstance(c, str)})}
    tracking = _tracking_numbers(ids)

    shipments = list(Shipment.objects.filter(id__in=ids))
    for shipment in shipments:
        _project_shipment(shipment, by_shipment[shipment.id], partners)
        shipment.tracking_number = tracking.get(shipment.id, "")
    save_fields(Shipment, shipments, SHIPMENT_FIELDS)
    _rebuild_shipment_lines(ids, by_shipment)


def _project_shipment(shipment: Shipment, rows: list[dict[str, Any]], partners: dict[str, int]) -> None:
    """``rows`` are the shipment's milestones sorted by (occurred_at, event_id)."""
    for name in [*SHIPMENT_FIRST_FIELDS.values(), *SHIPMENT_LAST_FIELDS.values()]:
        setattr(shipment, name, None)
    shipment.status, shipment.delay_reason, shipment.estimated_delivery_at = ShipmentStatus.MANIFESTED, "", None
    shipment.carrier_id = shipment.warehouse_id = shipment.last_carrier_event_at = None
    for row in rows:
        kind, at, attributes = row["kind"], row["occurred_at"], row["payload__attributes"] or {}
        first = SHIPMENT_FIRST_FIELDS.get(kind)
        if first and getattr(shipment, first) is None:
            setattr(shipment, first, at)
        if kind in SHIPMENT_LAST_FIELDS:
            setattr(shipment, SHIPMENT_LAST_FIELDS[kind], at)
        status = SHIPMENT_STATUS_BY_KIND.get(kind)
        if status and SHIPMENT_STATUS_RANK[status] > SHIPMENT_STATUS_RANK[shipment.status]:
            shipment.status = status
        if kind == K.SHIPMENT_DELAYED:
            shipment.delay_reason = str(attributes.get("reason") or "")[:200]
        if row["estimated_delivery_at"]:
            shipment.estimated_delivery_at = row["estimated_delivery_at"]
        if kind in CARRIER_KINDS:
            shipment.last_carrier_event_at = at
        if shipment.carrier_id is None:
            shipment.carrier_id = partners.get(attributes.get("carrier")) or (
                row["source_partner_id"] if row["source_partner__kind"] == Partner.Kind.CARRIER else None
            )
        if shipment.warehouse_id is None and kind == K.SHIPMENT_MANIFESTED:
            shipment.warehouse_id = partners.get(attributes.get("warehouse")) or (
                row["source_partner_id"] if row["source_partner__kind"] == Partner.Kind.WAREHOUSE else None
            )
    if shipment.delivered_at is None and shipment.status in (ShipmentStatus.DELIVERED, ShipmentStatus.POD_RECEIVED):
        shipment.delivered_at = shipment.pod_at


def _tracking_numbers(ids: set[int]) -> dict[int, str]:
    """The shipment's tracking number: the smallest of its tracking references, for determinism."""
    numbers: dict[int, str] = {}
    refs = Reference.objects.filter(shipment_id__in=ids, kind="tracking").order_by("value")
    for shipment_id, value in refs.values_list("shipment_id", "value"):
        numbers.setdefault(shipment_id, value)
    return numbers


def _rebuild_shipment_lines(ids: set[int], by_shipment: dict[int, list[dict[str, Any]]]) -> None:
    """Lines come from the latest manifest that lists any: a corrected ASN replaces the first."""
    manifests = {}
    for shipment_id, rows in by_shipment.items():
        with_lines = [row for row in rows if row["kind"] == K.SHIPMENT_MANIFESTED and row["lines"]]
        if with_lines:
            manifests[shipment_id] = with_lines[-1]["lines"]
    through = Shipment.orders.through
    orders_by_shipment: dict[int, set[int]] = defaultdict(set)
    for shipment_id, order_id in through.objects.filter(shipment_id__in=ids).values_list("shipment_id", "order_id"):
        orders_by_shipment[shipment_id].add(order_id)
    named = {line.get("order") for lines in manifests.values() for line in lines if line.get("order")}
    orders_by_ref: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for value, order_id, number in Reference.objects.filter(value__in=named, order__isnull=False).values_list(
        "value", "order_id", "order__number"
    ):
        orders_by_ref[value].append((number, order_id))
    new_lines: dict[tuple[int, int | None, str], ShipmentLine] = {}
    for shipment_id, lines in manifests.items():
        linked = orders_by_shipment[shipment_id]
        only_order = next(iter(linked)) if len(linked) == 1 else None
        for line in lines:
            order_id = _line_order(line.get("order"), linked, orders_by_ref) if line.get("order") else only_order
            key = (shipment_id, order_id, line["sku"])
            if key in new_lines:
                new_lines[key].quantity += Decimal(line["quantity"])
            else:
                new_lines[key] = ShipmentLine(
                    shipment_id=shipment_id,
                    order_id=order_id,
                    sku=line["sku"],
                    quantity=Decimal(line["quantity"]),
                    uom=line.get("uom", "EA"),
                )
    ShipmentLine.objects.filter(shipment_id__in=ids).delete()
    ShipmentLine.objects.bulk_create(new_lines.values(), batch_size=BATCH_SIZE)


def _line_order(ref: str, linked: set[int], orders_by_ref: dict[str, list[tuple[str, int]]]) -> int | None:
    """The order a manifest line names, among the orders its shipment is linked to (lowest number)."""
    candidates = sorted(pair for pair in orders_by_ref.get(ref, ()) if pair[1] in linked)
    return candidates[0][1] if candidates else None


# --- orders -----------------------------------------------------------------------------------


def _recompute_orders(ids: set[int]) -> None:
    rows = list(
        Milestone.objects.filter(order_id__in=ids).order_by().values("order_id", "kind", "occurred_at", "event_id")
    )
    by_order: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["occurred_at"], r["event_id"])):
        by_order[row["order_id"]].append(row)
    headers = _order_headers(ids)
    shipments = _shipments_by_order(ids)
    customer_ids = dict(
        Partner.objects.filter(
            code__in={h["order"].get("customer") for h in headers.values() if h["order"].get("customer")}
        ).values_list("code", "id")
    )
    orders = list(Order.objects.filter(id__in=ids))
    for order in orders:
        header = headers.get(order.id)
        _project_header(order, header, customer_ids)
        _project_order(order, by_order[order.id], shipments.get(order.id, []))
    save_fields(Order, orders, ORDER_FIELDS)
    _rebuild_order_lines(ids, headers)


def _order_headers(ids: set[int]) -> dict[int, dict[str, Any]]:
    """The latest ``order.created`` of each order: later corrections win."""
    created = (
        Milestone.objects.filter(order_id__in=ids, kind=K.ORDER_CREATED)
        .order_by("occurred_at", "event_id")
        .values("order_id", "payload", "lines", "amount", "currency")
    )
    headers = {}
    for row in created:
        headers[row["order_id"]] = {
            "order": row["payload"].get("order") or {},
            "lines": row["lines"],
            "amount": row["amount"],
            "currency": row["currency"],
        }
    return headers


def _project_header(order: Order, header: dict[str, Any] | None, customer_ids: dict[str, int]) -> None:
    if header is None:
        return
    info = header["order"]
    order.customer_id = customer_ids.get(info.get("customer"))
    order.region = (info.get("region") or "")[:60]
    order.promised_at = _parse_time(info.get("promised_at"))
    order.currency = header["currency"]
    order.total_amount = header["amount"]
    if order.total_amount is None and header["lines"]:
        priced = [line for line in header["lines"] if line.get("unit_price") is not None]
        if priced:
            order.total_amount = sum(Decimal(line["quantity"]) * Decimal(line["unit_price"]) for line in priced)


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _shipments_by_order(ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    through = Shipment.orders.through
    rows = through.objects.filter(order_id__in=ids).values(
        "order_id",
        "shipment__manifested_at",
        "shipment__delivered_at",
        "shipment__pod_at",
        "shipment__last_carrier_event_at",
        "shipment__status",
    )
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["order_id"]].append(row)
    return grouped


def _project_order(order: Order, rows: list[dict[str, Any]], shipments: list[dict[str, Any]]) -> None:
    for name in ORDER_FIRST_FIELDS.values():
        setattr(order, name, None)
    own_shipping: dict[str, datetime] = {}
    for row in rows:
        name = ORDER_FIRST_FIELDS.get(row["kind"])
        if name and getattr(order, name) is None:
            setattr(order, name, row["occurred_at"])
        # Shipment events that name only the order (no shipment reference) still move it on.
        own_shipping.setdefault(row["kind"], row["occurred_at"])

    manifested = [s["shipment__manifested_at"] for s in shipments if s["shipment__manifested_at"]]
    order.shipped_at = min(manifested, default=own_shipping.get(K.SHIPMENT_MANIFESTED))
    order.delivered_at = _when_all(shipments, "shipment__delivered_at", own_shipping.get(K.SHIPMENT_DELIVERED))
    order.pod_at = _when_all(shipments, "shipment__pod_at", own_shipping.get(K.SHIPMENT_POD_RECEIVED))
    some_delivered = any(s["shipment__delivered_at"] for s in shipments)
    order.stage = _order_stage(order, some_delivered)
    times = [row["occurred_at"] for row in rows]
    times += [t for s in shipments for t in (s["shipment__manifested_at"], s["shipment__last_carrier_event_at"]) if t]
    order.last_event_at = max(times, default=None)


def _when_all(shipments: list[dict[str, Any]], field: str, fallback: datetime | None) -> datetime | None:
    """When the last of the order's shipments reached ``field``; None while any has not."""
    if not shipments:
        return fallback
    times = [s[field] for s in shipments]
    return max(times) if all(times) else None


def _order_stage(order: Order, some_delivered: bool) -> str:
    if order.cancelled_at and not order.shipped_at:
        return OrderStage.CANCELLED
    ladder = [
        (order.posted_at, OrderStage.POSTED),
        (order.invoiced_at, OrderStage.INVOICED),
        (order.delivered_at, OrderStage.DELIVERED),
        (some_delivered, OrderStage.PARTIALLY_DELIVERED),
        (order.shipped_at, OrderStage.SHIPPED),
        (order.packed_at, OrderStage.PACKED),
        (order.picked_at, OrderStage.PICKED),
        (order.allocated_at, OrderStage.ALLOCATED),
        (order.released_at, OrderStage.RELEASED),
    ]
    return next((stage for reached, stage in ladder if reached), OrderStage.CREATED)


def _rebuild_order_lines(ids: set[int], headers: dict[int, dict[str, Any]]) -> None:
    lines: dict[tuple[int, str], OrderLine] = {}
    for order_id, header in headers.items():
        for line in header["lines"]:
            key = (order_id, line["sku"])
            if key in lines:
                lines[key].quantity += Decimal(line["quantity"])
                continue
            lines[key] = OrderLine(
                order_id=order_id,
                sku=line["sku"],
                line_number=line.get("line_number") or "",
                quantity=Decimal(line["quantity"]),
                uom=line.get("uom", "EA"),
                unit_price=Decimal(line["unit_price"]) if line.get("unit_price") is not None else None,
            )
    OrderLine.objects.filter(order_id__in=headers).delete()
    OrderLine.objects.bulk_create(lines.values(), batch_size=BATCH_SIZE)


# --- inventory --------------------------------------------------------------------------------


def _warehouse_code(event: CanonicalEvent) -> str | None:
    code = event.attributes.get("warehouse") or event.source.partner
    return code if isinstance(code, str) else None


def inventory_rejection(event: CanonicalEvent, partners: dict[str, Partner]) -> str | None:
    """Why an inventory event cannot be applied, or None when it can."""
    code = _warehouse_code(event)
    if not code:
        return "inventory event names no warehouse (attributes.warehouse or the sending partner)"
    if code not in partners:
        return f"inventory event names unknown warehouse {code!r}"
    if not event.lines:
        return "inventory event has no lines"
    return None


def apply_inventory(events: list[CanonicalEvent], partners: dict[str, Partner], result: "ApplyResult") -> None:
    """Positions per (warehouse, SKU): the latest snapshot, plus the adjustments after it."""
    touched = {
        (partners[_warehouse_code(e)].id, normalize_reference(line.sku))
        for e in events
        if e.event_id not in result.rejected
        for line in e.lines
    }
    if not touched:
        return
    warehouses = {warehouse_id for warehouse_id, _ in touched}
    codes = {code: partner.id for code, partner in partners.items() if partner.id in warehouses}
    history = Milestone.objects.filter(
        Q(source_partner_id__in=warehouses) | Q(payload__attributes__warehouse__in=list(codes)),
        kind__in=[K.INVENTORY_SNAPSHOT, K.INVENTORY_ADJUSTED],
    ).values("kind", "occurred_at", "event_id", "lines", "source_partner__code", "payload__attributes")
    positions: dict[tuple[int, str], dict[str, Any]] = {}
    for row in sorted(history, key=lambda r: (r["occurred_at"], r["event_id"])):
        code = (row["payload__attributes"] or {}).get("warehouse") or row["source_partner__code"]
        warehouse_id = codes.get(code)
        if warehouse_id is None:
            continue
        for line in row["lines"]:
            key = (warehouse_id, normalize_reference(line["sku"]))
            if key not in touched:
                continue
            quantity = Decimal(line["quantity"])
            current = positions.get(key)
            if row["kind"] == K.INVENTORY_SNAPSHOT or current is None:
                positions[key] = {"quantity": quantity, "uom": line.get("uom", "EA"), "as_of": row["occurred_at"]}
            else:
                current["quantity"] += quantity
                current["as_of"] = row["occurred_at"]
    InventoryPosition.objects.bulk_create(
        [InventoryPosition(warehouse_id=w, sku=sku, **values) for (w, sku), values in positions.items()],
        update_conflicts=True,
        unique_fields=["warehouse", "sku"],
        update_fields=["quantity", "uom", "as_of"],
        batch_size=BATCH_SIZE,
    )
