"""The state a user can see, keyed by business identifiers: for comparing two ways of getting there."""

from datetime import UTC, datetime
from typing import Any

from apps.billing.models import FreightCharge, Invoice, ReturnAuthorization
from apps.inventory.models import InventoryPosition
from apps.partners.models import Partner
from apps.timeline.models import (
    Milestone,
    MilestoneReport,
    Order,
    OrderLine,
    ParkedEvent,
    Reference,
    Shipment,
    ShipmentLine,
)


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    values = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in ("created_at", "updated_at", *skip):
            continue
        value = getattr(obj, field.attname)
        values[field.name] = _time(value) if isinstance(value, datetime) else value
    return values


def _sorted(rows: Any) -> list:
    return sorted(rows, key=repr)


def snapshot() -> dict[str, Any]:
    """Everything a user can see, keyed by business identifiers instead of database ids."""
    order_numbers = dict(Order.objects.values_list("id", "number"))
    shipment_numbers = dict(Shipment.objects.values_list("id", "number"))
    partner_codes = dict(Partner.objects.values_list("id", "code"))

    def named(row: dict[str, Any]) -> dict[str, Any]:
        for key, table in (("order", order_numbers), ("shipment", shipment_numbers)):
            if key in row:
                row[key] = table.get(row[key])
        for key in ("customer", "carrier", "warehouse", "source_partner"):
            if key in row:
                row[key] = partner_codes.get(row[key])
        return row

    return {
        "orders": {o.number: named(_row(o)) for o in Order.objects.all()},
        "order_lines": _sorted(
            (order_numbers[line.order_id], line.sku, str(line.quantity)) for line in OrderLine.objects.all()
        ),
        "shipments": {
            s.number: {
                **named(_row(s)),
                "orders": sorted(order_numbers[o] for o in s.orders.values_list("id", flat=True)),
            }
            for s in Shipment.objects.all()
        },
        "shipment_lines": _sorted(
            (shipment_numbers[line.shipment_id], order_numbers.get(line.order_id), line.sku, str(line.quantity))
            for line in ShipmentLine.objects.all()
        ),
        "references": _sorted(
            (r.kind, r.value, order_numbers.get(r.order_id), shipment_numbers.get(r.shipment_id))
            for r in Reference.objects.all()
        ),
        "milestones": _sorted(
            (m.event_id, order_numbers.get(m.order_id), shipment_numbers.get(m.shipment_id))
            for m in Milestone.objects.all()
        ),
        "parked": _sorted(ParkedEvent.objects.values_list("event_id", flat=True)),
        "reports": _sorted(MilestoneReport.objects.values_list("event_id", "milestone__event_id")),
        "invoices": {i.number: named(_row(i)) for i in Invoice.objects.all()},
        "freight": {(shipment_numbers[f.shipment_id], f.number): named(_row(f)) for f in FreightCharge.objects.all()},
        "returns": {r.number: named(_row(r)) for r in ReturnAuthorization.objects.all()},
        "inventory": _sorted((p.sku, str(p.quantity), _time(p.as_of)) for p in InventoryPosition.objects.all()),
    }
