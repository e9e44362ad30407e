"""Invoice triggers and holds.

When a customer's invoice rule is met, the control tower says ``invoice.generated`` on the order's
timeline, through ``apply_events`` like any other source. The event id is derived from the
invoice number, so an invoice is generated at most once however often, and in whatever order,
the deliveries that trigger it arrive. Variance beyond tolerance, damage, refusal or disputed
freight add ``invoice.held`` with the reason; the finance queue picks it up from there.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from apps.billing.models import FreightCharge, Invoice, InvoiceRule
from apps.timeline.events import CanonicalEvent, EventSource, parse_events
from apps.timeline.models import Order, OrderLine, Shipment, ShipmentLine
from apps.timeline.services import ApplyResult, apply_events

RULE_PREFIX = "invoice-rule"
SWEEP_LIMIT = 20_000
SOURCE = EventSource(partner=None, channel=None)
FREIGHT_OK = {FreightCharge.Status.VALIDATED, FreightCharge.Status.SETTLED}


@dataclass
class _Shipment:
    number: str
    manifested_at: datetime | None
    delivered_at: datetime | None
    troubled: list[str]
    freight: list[str]
    lines: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class _Order:
    order: Order
    rule: InvoiceRule
    ordered: dict[str, tuple[Decimal, Decimal | None]]
    shipments: list[_Shipment]
    invoices: set[str]


def orders_awaiting_invoice() -> list[int]:
    """Shipped, not invoiced orders of customers with a rule: what the periodic sweep looks at."""
    orders = Order.objects.filter(
        shipped_at__isnull=False,
        invoiced_at__isnull=True,
        cancelled_at__isnull=True,
        customer__invoice_rule__enabled=True,
    )
    return list(orders.values_list("id", flat=True)[:SWEEP_LIMIT])


def evaluate_invoice_rules(*, order_ids: Iterable[int]) -> ApplyResult | None:
    """Generate (and hold where needed) the invoices that the touched orders' rules now call for."""
    orders = _load(set(order_ids))
    events = [event for order in orders for event in _invoice_events(order)]
    return apply_events(events) if events else None


def invoice_trigger(*, order: Order, actor: AbstractBaseUser) -> ApplyResult:
    """Finance invoices an order by hand (at most once: the same invoice number, the same event)."""
    number = f"INV-{order.number}"
    event = _event(
        "generated",
        number,
        order,
        timezone.now(),
        amount=order.total_amount,
        attributes={"triggered_by": actor.get_username()},
    )
    return apply_events([event])


def invoice_release(*, invoice: Invoice, actor: AbstractBaseUser, note: str = "") -> ApplyResult:
    """Finance releases a held invoice; the release is an event on the order's timeline."""
    now = timezone.now()
    event = _event(
        f"released-{now:%Y%m%d%H%M%S%f}",
        invoice.number,
        invoice.order,
        now,
        kind="invoice.released",
        attributes={"released_by": actor.get_username(), "note": note},
    )
    return apply_events([event])


# --- loading, set-based -----------------------------------------------------------------------


def _load(order_ids: set[int]) -> list[_Order]:
    orders = list(
        Order.objects.filter(
            id__any=order_ids, cancelled_at__isnull=True, customer__invoice_rule__enabled=True
        ).select_related("customer__invoice_rule")
    )
    ids = [order.id for order in orders]
    ordered: dict[int, dict[str, tuple[Decimal, Decimal | None]]] = defaultdict(dict)
    for line in OrderLine.objects.filter(order_id__any=ids):
        ordered[line.order_id][line.sku] = (line.quantity, line.unit_price)
    shipped: dict[tuple[int, int], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for line in ShipmentLine.objects.filter(order_id__any=ids):
        shipped[(line.order_id, line.shipment_id)][line.sku] += line.quantity
    links = Shipment.orders.through.objects.filter(order_id__any=ids).select_related("shipment")
    freight: dict[int, list[str]] = defaultdict(list)
    for shipment_id, status in FreightCharge.objects.filter(
        shipment_id__any={link.shipment_id for link in links}
    ).values_list("shipment_id", "status"):
        freight[shipment_id].append(status)
    by_order: dict[int, list[_Shipment]] = defaultdict(list)
    for link in links:
        s = link.shipment
        by_order[link.order_id].append(
            _Shipment(
                number=s.number,
                manifested_at=s.manifested_at,
                delivered_at=s.delivered_at or s.pod_at,
                troubled=[reason for reason, at in (("damaged", s.damaged_at), ("refused", s.refused_at)) if at],
                freight=freight[s.id],
                lines=dict(shipped[(link.order_id, s.id)]),
            )
        )
    invoices: dict[int, set[str]] = defaultdict(set)
    for order_id, number in Invoice.objects.filter(order_id__any=ids).values_list("order_id", "number"):
        invoices[order_id].add(number)
    return [
        _Order(
            order=order,
            rule=order.customer.invoice_rule,
            ordered=ordered[order.id],
            shipments=sorted(by_order[order.id], key=lambda s: s.number),
            invoices=invoices[order.id],
        )
        for order in orders
    ]


# --- deciding ---------------------------------------------------------------------------------


def _ready_at(shipment: _Shipment, trigger: str) -> datetime | None:
    """When the shipment met the rule's condition, or None while it has not."""
    if trigger == InvoiceRule.Trigger.SHIP_CONFIRMATION:
        return shipment.manifested_at
    if trigger == InvoiceRule.Trigger.PROOF_OF_DELIVERY:
        return shipment.delivered_at
    if shipment.freight and all(status in FREIGHT_OK for status in shipment.freight):
        return shipment.delivered_at
    return None


def _invoice_events(order: _Order) -> list[CanonicalEvent]:
    ready = [(shipment, _ready_at(shipment, order.rule.trigger)) for shipment in order.shipments]
    if order.rule.granularity == InvoiceRule.Granularity.PER_SHIPMENT:
        return [
            event
            for shipment, at in ready
            if at is not None
            for event in _invoice(order, f"INV-{order.order.number}-{shipment.number}", at, [shipment])
        ]
    number = f"INV-{order.order.number}"
    invoiced_elsewhere = order.invoices - {number}
    if invoiced_elsewhere or not ready or any(at is None for _, at in ready):
        return []
    shipments = [shipment for shipment, _ in ready]
    if not _complete(order, shipments):
        return []
    return _invoice(order, number, max(at for _, at in ready), shipments)


def _shipped(shipments: list[_Shipment]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for shipment in shipments:
        for sku, quantity in shipment.lines.items():
            totals[sku] += quantity
    return totals


def _complete(order: _Order, shipments: list[_Shipment]) -> bool:
    """Every ordered quantity shipped, within tolerance (an order without lines is complete)."""
    shipped = _shipped(shipments)
    tolerance = order.rule.quantity_tolerance
    return all(shipped.get(sku, 0) >= quantity * (1 - tolerance) for sku, (quantity, _) in order.ordered.items())


def _hold_reasons(order: _Order, shipments: list[_Shipment]) -> list[str]:
    reasons = [f"shipment {s.number} {trouble}" for s in shipments for trouble in s.troubled]
    reasons += [
        f"freight of shipment {s.number} disputed" for s in shipments if FreightCharge.Status.DISPUTED in s.freight
    ]
    tolerance = order.rule.quantity_tolerance
    for sku, quantity in _shipped(shipments).items():
        ordered = order.ordered.get(sku, (Decimal(0), None))[0]
        if quantity > ordered * (1 + tolerance):
            reasons.append(f"{sku}: shipped {quantity.normalize():f}, ordered {ordered.normalize():f}")
    return reasons


def _invoice(order: _Order, number: str, at: datetime, shipments: list[_Shipment]) -> list[CanonicalEvent]:
    shipped = _shipped(shipments)
    lines = [
        {"sku": sku, "quantity": str(quantity), "unit_price": str(order.ordered[sku][1])}
        for sku, quantity in sorted(shipped.items())
        if sku in order.ordered and order.ordered[sku][1] is not None
    ]
    amount = sum((Decimal(line["quantity"]) * Decimal(line["unit_price"]) for line in lines), Decimal(0))
    events = [_event("generated", number, order.order, at, amount=amount or order.order.total_amount, lines=lines)]
    reasons = _hold_reasons(order, shipments)
    if reasons:
        events.append(
            _event("held", number, order.order, at, kind="invoice.held", attributes={"reason": "; ".join(reasons)})
        )
    return events


def _event(
    step: str,
    number: str,
    order: Order,
    at: datetime,
    *,
    kind: str = "invoice.generated",
    amount: Decimal | None = None,
    lines: list[dict] | None = None,
    attributes: dict | None = None,
) -> CanonicalEvent:
    data = {
        "event_id": f"{RULE_PREFIX}:{step}:{number}",
        "kind": kind,
        "occurred_at": at.isoformat(),
        "references": [{"kind": "invoice", "value": number}, {"kind": "order", "value": order.number}],
        "lines": lines or [],
        "attributes": {"generated_by": "invoice rule", **(attributes or {})},
    }
    if amount is not None:
        data |= {"amount": str(amount), "currency": order.currency or None}
    return parse_events(data, source=SOURCE)[0]
