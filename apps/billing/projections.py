"""Invoices, freight charges and returns, projected from the milestones of touched subjects."""

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db.models import Model

from apps.billing.models import FreightCharge, Invoice, ReturnAuthorization
from apps.partners.models import Partner
from apps.timeline.events import EventKind as K
from apps.timeline.models import Milestone

BATCH_SIZE = 500

INVOICE_STATUS_BY_KIND = {
    K.INVOICE_GENERATED: Invoice.Status.GENERATED,
    K.INVOICE_HELD: Invoice.Status.HELD,
    K.INVOICE_RELEASED: Invoice.Status.RELEASED,
    K.INVOICE_POSTED: Invoice.Status.POSTED,
}
INVOICE_TIME_FIELDS = {
    K.INVOICE_GENERATED: "generated_at",
    K.INVOICE_HELD: "held_at",
    K.INVOICE_RELEASED: "released_at",
    K.INVOICE_POSTED: "posted_at",
}
FREIGHT_STATUS_BY_KIND = {
    K.FREIGHT_CHARGE_POSTED: FreightCharge.Status.POSTED,
    K.FREIGHT_CHARGE_VALIDATED: FreightCharge.Status.VALIDATED,
    K.FREIGHT_CHARGE_DISPUTED: FreightCharge.Status.DISPUTED,
    K.FREIGHT_CHARGE_SETTLED: FreightCharge.Status.SETTLED,
}
FREIGHT_TIME_FIELDS = {
    K.FREIGHT_CHARGE_POSTED: "posted_at",
    K.FREIGHT_CHARGE_VALIDATED: "validated_at",
    K.FREIGHT_CHARGE_DISPUTED: "disputed_at",
    K.FREIGHT_CHARGE_SETTLED: "settled_at",
}
FIELDS = ("kind", "occurred_at", "event_id", "references", "amount", "currency", "payload__attributes")
INVOICE_FIELDS = ["order", "amount", "currency", "status", "hold_reason", *INVOICE_TIME_FIELDS.values()]
RETURN_FIELDS = ["order", "status", "authorized_at", "received_at", "lines"]
FREIGHT_FIELDS = ["carrier", "amount", "quoted_amount", "currency", "status", *FREIGHT_TIME_FIELDS.values()]


def recompute_billing(*, order_ids: Iterable[int], shipment_ids: Iterable[int]) -> None:
    order_ids, shipment_ids = set(order_ids), set(shipment_ids)
    if order_ids:
        _recompute_invoices(order_ids)
        _recompute_returns(order_ids)
    if shipment_ids:
        _recompute_freight(shipment_ids)


def _sorted(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["occurred_at"], r["event_id"]))


def _reference(row: dict[str, Any], kind: str) -> str | None:
    return next((ref["value"] for ref in row["references"] if ref["kind"] == kind), None)


def _upsert_changed(
    model: type[Model],
    projected: dict[Any, Model],
    stored: dict[Any, tuple[Any, ...]],
    *,
    unique_fields: list[str],
    update_fields: list[str],
) -> None:
    """Upsert the projected rows that are new or whose ``update_fields`` differ from ``stored``.

    Most recomputes leave most rows as they were; those need neither a write nor the per-field
    preparation of ``bulk_create``.
    """
    attnames = [model._meta.get_field(name).attname for name in update_fields]
    changed = [
        obj for key, obj in projected.items() if stored.get(key) != tuple(getattr(obj, name) for name in attnames)
    ]
    model.objects.bulk_create(
        changed,
        update_conflicts=True,
        unique_fields=unique_fields,
        update_fields=update_fields,
        batch_size=BATCH_SIZE,
    )


def _recompute_invoices(order_ids: set[int]) -> None:
    """Status follows the latest invoice event (a hold after a release holds it again)."""
    rows = Milestone.objects.filter(order_id__any=order_ids, kind__in=INVOICE_STATUS_BY_KIND).values(
        "order_id", *FIELDS
    )
    invoices: dict[str, Invoice] = {}
    for row in _sorted(rows):
        number = _reference(row, "invoice")
        if not number:
            continue
        invoice = invoices.setdefault(number, Invoice(number=number, order_id=row["order_id"]))
        invoice.status = INVOICE_STATUS_BY_KIND[row["kind"]]
        time_field = INVOICE_TIME_FIELDS[row["kind"]]
        if row["kind"] == K.INVOICE_HELD or getattr(invoice, time_field) is None:
            setattr(invoice, time_field, row["occurred_at"])
        if row["kind"] == K.INVOICE_HELD:
            invoice.hold_reason = str((row["payload__attributes"] or {}).get("reason") or "")[:200]
        if row["amount"] is not None:
            invoice.amount, invoice.currency = row["amount"], row["currency"]
    stored = Invoice.objects.filter(number__any=invoices).values_list("number", *INVOICE_FIELDS)
    _upsert_changed(
        Invoice,
        invoices,
        {row[0]: row[1:] for row in stored},
        unique_fields=["number"],
        update_fields=INVOICE_FIELDS,
    )


def _recompute_returns(order_ids: set[int]) -> None:
    rows = Milestone.objects.filter(order_id__any=order_ids, kind__in=[K.RETURN_AUTHORIZED, K.RETURN_RECEIVED]).values(
        "order_id", "lines", *FIELDS
    )
    returns: dict[str, ReturnAuthorization] = {}
    for row in _sorted(rows):
        number = _reference(row, "rma")
        if not number:
            continue
        rma = returns.setdefault(number, ReturnAuthorization(number=number, order_id=row["order_id"]))
        if row["kind"] == K.RETURN_AUTHORIZED:
            rma.authorized_at = rma.authorized_at or row["occurred_at"]
            rma.lines = row["lines"] or rma.lines
        else:
            rma.received_at = rma.received_at or row["occurred_at"]
            rma.status = ReturnAuthorization.Status.RECEIVED
    stored = ReturnAuthorization.objects.filter(number__any=returns).values_list("number", *RETURN_FIELDS)
    _upsert_changed(
        ReturnAuthorization,
        returns,
        {row[0]: row[1:] for row in stored},
        unique_fields=["number"],
        update_fields=RETURN_FIELDS,
    )


def _charge_number(row: dict[str, Any]) -> str:
    attributes = row["payload__attributes"] or {}
    return str(attributes.get("charge_number") or _reference(row, "invoice") or _reference(row, "pro") or "FREIGHT")


def _recompute_freight(shipment_ids: set[int]) -> None:
    """Settled is final; otherwise the latest audit event (validated or disputed) decides."""
    rows = list(
        Milestone.objects.filter(shipment_id__any=shipment_ids, kind__in=FREIGHT_STATUS_BY_KIND).values(
            "shipment_id", "source_partner_id", "source_partner__kind", *FIELDS
        )
    )
    carrier_codes = {(row["payload__attributes"] or {}).get("carrier") for row in rows}
    carriers = dict(
        Partner.objects.filter(code__in={c for c in carrier_codes if isinstance(c, str)}).values_list("code", "id")
    )
    charges: dict[tuple[int, str], FreightCharge] = {}
    for row in _sorted(rows):
        key = (row["shipment_id"], _charge_number(row))
        charge = charges.get(key) or FreightCharge(shipment_id=key[0], number=key[1])
        charges[key] = charge
        kind, attributes = row["kind"], row["payload__attributes"] or {}
        time_field = FREIGHT_TIME_FIELDS[kind]
        if getattr(charge, time_field) is None:
            setattr(charge, time_field, row["occurred_at"])
        if charge.status != FreightCharge.Status.SETTLED:
            charge.status = FREIGHT_STATUS_BY_KIND[kind]
        if kind == K.FREIGHT_CHARGE_POSTED and row["amount"] is not None:
            charge.amount, charge.currency = row["amount"], row["currency"]
        if attributes.get("quoted_amount") is not None:
            charge.quoted_amount = Decimal(str(attributes["quoted_amount"]))
        if charge.carrier_id is None:
            charge.carrier_id = carriers.get(attributes.get("carrier")) or (
                row["source_partner_id"] if row["source_partner__kind"] == Partner.Kind.CARRIER else None
            )
    stored = FreightCharge.objects.filter(shipment_id__any={shipment_id for shipment_id, _ in charges})
    _upsert_changed(
        FreightCharge,
        charges,
        {(row[0], row[1]): row[2:] for row in stored.values_list("shipment_id", "number", *FREIGHT_FIELDS)},
        unique_fields=["shipment", "number"],
        update_fields=FREIGHT_FIELDS,
    )
