"""The built-in detectors: one set-based selector per rule code.

A detector returns the subjects for which its condition holds now (one :class:`Hit` each). It
runs over every subject on the periodic sweep, or only over the orders an apply touched. The
engine opens a case for each new hit and closes, as resolved "auto", the open cases whose subject
is no longer a hit.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from apps.billing.models import FreightCharge, Invoice
from apps.exceptions.models import ExceptionRule, Queue, Severity, SubjectType
from apps.ingest.models import InboundMessage
from apps.timeline.models import Order, ParkedEvent, Shipment

OrderIds = set[int] | None


@dataclass(frozen=True)
class Hit:
    subject_id: int
    summary: str
    order_id: int | None = None
    shipment_id: int | None = None
    partner_id: int | None = None
    customer_id: int | None = None
    region: str = ""
    amount: Decimal | None = None
    currency: str = ""


@dataclass(frozen=True)
class Detector:
    code: str
    title: str
    subject_type: str
    queue: str
    severity: str
    threshold: timedelta
    sla: timedelta
    find: Callable[[ExceptionRule, datetime, OrderIds], Iterable[Hit]]
    tolerance: Decimal | None = None

    @property
    def order_scoped(self) -> bool:
        """Whether an apply's touched orders can change this rule's answer (else: sweep only)."""
        return self.subject_type not in (SubjectType.MESSAGE, SubjectType.PARKED_EVENT)


# --- scoping ----------------------------------------------------------------------------------


def _orders(rule: ExceptionRule, order_ids: OrderIds) -> QuerySet[Order]:
    orders = Order.objects.filter(cancelled_at__isnull=True)
    if order_ids is not None:
        orders = orders.filter(id__in=order_ids)
    if rule.scope_customer_id:
        orders = orders.filter(customer_id=rule.scope_customer_id)
    if rule.scope_region:
        orders = orders.filter(region=rule.scope_region)
    if rule.scope_partner_id:
        orders = orders.filter(
            Q(shipments__carrier_id=rule.scope_partner_id) | Q(shipments__warehouse_id=rule.scope_partner_id)
        ).distinct()
    return orders


def _shipments(rule: ExceptionRule, order_ids: OrderIds) -> QuerySet[Shipment]:
    shipments = Shipment.objects.all()
    if order_ids is not None:
        shipments = shipments.filter(orders__in=order_ids)
    if rule.scope_customer_id:
        shipments = shipments.filter(orders__customer_id=rule.scope_customer_id)
    if rule.scope_region:
        shipments = shipments.filter(orders__region=rule.scope_region)
    if rule.scope_partner_id:
        shipments = shipments.filter(Q(carrier_id=rule.scope_partner_id) | Q(warehouse_id=rule.scope_partner_id))
    return shipments.distinct()


def _order_hits(orders: QuerySet[Order], describe: Callable[[dict], str]) -> list[Hit]:
    rows = orders.values("id", "number", "customer_id", "region", "total_amount", "currency", "promised_at")
    return [
        Hit(
            subject_id=row["id"],
            summary=describe(row),
            order_id=row["id"],
            customer_id=row["customer_id"],
            region=row["region"],
            amount=row["total_amount"],
            currency=row["currency"],
        )
        for row in rows
    ]


def _shipment_hits(shipments: QuerySet[Shipment], describe: Callable[[dict], str]) -> list[Hit]:
    rows = shipments.annotate(order_total=Sum("orders__total_amount")).values(
        "id", "number", "tracking_number", "carrier_id", "order_total"
    )
    rows = list(rows)
    firsts = _first_orders({row["id"] for row in rows})
    orders = {
        order["id"]: order
        for order in Order.objects.filter(id__in=set(firsts.values())).values("id", "customer_id", "region", "currency")
    }
    hits = []
    for row in rows:
        order = orders.get(firsts.get(row["id"]), {})
        hits.append(
            Hit(
                subject_id=row["id"],
                summary=describe(row),
                order_id=order.get("id"),
                shipment_id=row["id"],
                partner_id=row["carrier_id"],
                customer_id=order.get("customer_id"),
                region=order.get("region", ""),
                amount=row["order_total"],
                currency=order.get("currency", ""),
            )
        )
    return hits


def _first_orders(shipment_ids: set[int]) -> dict[int, int]:
    """Each shipment's first order (lowest id): the order a shipment's case is filed under."""
    links = Shipment.orders.through.objects.filter(shipment_id__in=shipment_ids).order_by("shipment_id", "-order_id")
    return dict(links.values_list("shipment_id", "order_id"))


# --- orders -----------------------------------------------------------------------------------


def released_not_picked(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    orders = _orders(rule, order_ids).filter(
        released_at__lte=now - rule.threshold, picked_at__isnull=True, shipped_at__isnull=True
    )
    return _order_hits(orders, lambda o: f"Order {o['number']} released but not picked")


def picked_not_shipped(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    orders = _orders(rule, order_ids).filter(picked_at__lte=now - rule.threshold, shipped_at__isnull=True)
    return _order_hits(orders, lambda o: f"Order {o['number']} picked but not shipped")


def late_against_promise(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    orders = _orders(rule, order_ids).filter(promised_at__lte=now - rule.threshold, delivered_at__isnull=True)
    return _order_hits(orders, lambda o: f"Order {o['number']} not delivered by its promised date")


def delivered_not_invoiced(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    orders = _orders(rule, order_ids).filter(delivered_at__lte=now - rule.threshold, invoiced_at__isnull=True)
    return _order_hits(orders, lambda o: f"Order {o['number']} delivered but not invoiced")


# --- shipments --------------------------------------------------------------------------------


def manifested_without_tracking(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    shipments = _shipments(rule, order_ids).filter(
        manifested_at__lte=now - rule.threshold, tracking_number="", delivered_at__isnull=True
    )
    return _shipment_hits(shipments, lambda s: f"Shipment {s['number']} manifested without tracking")


def tracking_stale(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    shipments = (
        _shipments(rule, order_ids)
        .exclude(tracking_number="")
        .filter(delivered_at__isnull=True)
        .annotate(last_heard=Coalesce("last_carrier_event_at", "tracking_assigned_at", "manifested_at"))
        .filter(last_heard__lte=now - rule.threshold)
    )
    return _shipment_hits(shipments, lambda s: f"No carrier news for shipment {s['number']} ({s['tracking_number']})")


def at_risk(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    shipments = _shipments(rule, order_ids).filter(
        delivered_at__isnull=True, orders__promised_at__lt=F("estimated_delivery_at")
    )
    return _shipment_hits(shipments, lambda s: f"Shipment {s['number']} expected after the promised date")


def delivery_attempt_failed(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    shipments = _shipments(rule, order_ids).filter(delivery_attempted_at__isnull=False, delivered_at__isnull=True)
    return _shipment_hits(shipments, lambda s: f"Delivery of shipment {s['number']} failed")


def damaged_or_refused(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    shipments = _shipments(rule, order_ids).filter(Q(damaged_at__isnull=False) | Q(refused_at__isnull=False))
    return _shipment_hits(shipments, lambda s: f"Shipment {s['number']} damaged or refused")


# --- money ------------------------------------------------------------------------------------


def _invoices(rule: ExceptionRule, order_ids: OrderIds) -> QuerySet[Invoice]:
    return Invoice.objects.filter(order__in=_orders(rule, order_ids))


def invoice_held(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    rows = (
        _invoices(rule, order_ids)
        .filter(status=Invoice.Status.HELD, held_at__lte=now - rule.threshold)
        .values("id", "number", "hold_reason", "amount", "currency", "order_id", "order__customer_id", "order__region")
    )
    return [
        Hit(
            subject_id=row["id"],
            summary=f"Invoice {row['number']} held" + (f": {row['hold_reason']}" if row["hold_reason"] else ""),
            order_id=row["order_id"],
            customer_id=row["order__customer_id"],
            region=row["order__region"],
            amount=row["amount"],
            currency=row["currency"],
        )
        for row in rows
    ]


def _freight_hits(charges: QuerySet[FreightCharge], describe: Callable[[dict], str]) -> list[Hit]:
    rows = list(charges.values("id", "number", "amount", "quoted_amount", "currency", "carrier_id", "shipment_id"))
    firsts = _first_orders({row["shipment_id"] for row in rows})
    return [
        Hit(
            subject_id=row["id"],
            summary=describe(row),
            order_id=firsts.get(row["shipment_id"]),
            shipment_id=row["shipment_id"],
            partner_id=row["carrier_id"],
            amount=row["amount"],
            currency=row["currency"],
        )
        for row in rows
    ]


def _charges(rule: ExceptionRule, order_ids: OrderIds) -> QuerySet[FreightCharge]:
    return FreightCharge.objects.filter(shipment__in=_shipments(rule, order_ids))


def freight_unsettled(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    charges = _charges(rule, order_ids).filter(posted_at__lte=now - rule.threshold, settled_at__isnull=True)
    return _freight_hits(charges, lambda c: f"Freight charge {c['number']} not settled")


def freight_disputed_or_over_quote(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    factor = 1 + (rule.tolerance or Decimal(0))
    over_quote = Q(quoted_amount__isnull=False, amount__gt=F("quoted_amount") * factor)
    charges = (
        _charges(rule, order_ids)
        .filter(settled_at__isnull=True)
        .filter(Q(status=FreightCharge.Status.DISPUTED) | over_quote)
    )
    return _freight_hits(charges, lambda c: f"Freight charge {c['number']} disputed or above its quote")


# --- integration ------------------------------------------------------------------------------


def parked_too_long(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    parked = ParkedEvent.objects.filter(parked_at__lte=now - rule.threshold)
    if rule.scope_partner_id:
        parked = parked.filter(source_partner_id=rule.scope_partner_id)
    return [
        Hit(
            subject_id=row["id"],
            summary=f"{row['kind']} {row['event_id']} matches no order",
            partner_id=row["source_partner_id"],
        )
        for row in parked.values("id", "kind", "event_id", "source_partner_id")
    ]


def dead_letter(rule: ExceptionRule, now: datetime, order_ids: OrderIds) -> list[Hit]:
    messages = InboundMessage.objects.filter(
        status__in=[InboundMessage.Status.DEAD, InboundMessage.Status.FAILED], processed_at__lte=now - rule.threshold
    )
    if rule.scope_partner_id:
        messages = messages.filter(partner_id=rule.scope_partner_id)
    return [
        Hit(
            subject_id=row["id"],
            summary=f"Message #{row['id']} failed: {row['error'][:200]}",
            partner_id=row["partner_id"],
        )
        for row in messages.values("id", "error", "partner_id")
    ]


H, D = timedelta(hours=1), timedelta(days=1)
_S, _Q, _V = SubjectType, Queue, Severity
DETECTORS: dict[str, Detector] = {
    d.code: d
    for d in (
        Detector(
            "released_not_picked",
            "Released, not picked",
            _S.ORDER,
            _Q.SUPPLY_CHAIN,
            _V.MEDIUM,
            24 * H,
            D,
            released_not_picked,
        ),
        Detector(
            "picked_not_shipped",
            "Picked, not shipped",
            _S.ORDER,
            _Q.SUPPLY_CHAIN,
            _V.MEDIUM,
            12 * H,
            D,
            picked_not_shipped,
        ),
        Detector(
            "manifested_without_tracking",
            "Manifested without tracking",
            _S.SHIPMENT,
            _Q.CUSTOMER_SERVICE,
            _V.MEDIUM,
            4 * H,
            D,
            manifested_without_tracking,
        ),
        Detector(
            "tracking_stale",
            "Tracking gone quiet",
            _S.SHIPMENT,
            _Q.CUSTOMER_SERVICE,
            _V.MEDIUM,
            48 * H,
            D,
            tracking_stale,
        ),
        Detector(
            "late_against_promise",
            "Late against the promised date",
            _S.ORDER,
            _Q.CUSTOMER_SERVICE,
            _V.HIGH,
            0 * H,
            D,
            late_against_promise,
        ),
        Detector(
            "at_risk",
            "At risk: estimate after the promise",
            _S.SHIPMENT,
            _Q.CUSTOMER_SERVICE,
            _V.MEDIUM,
            0 * H,
            D,
            at_risk,
        ),
        Detector(
            "delivery_attempt_failed",
            "Delivery attempt failed",
            _S.SHIPMENT,
            _Q.CUSTOMER_SERVICE,
            _V.HIGH,
            0 * H,
            D,
            delivery_attempt_failed,
        ),
        Detector(
            "damaged_or_refused",
            "Damaged or refused",
            _S.SHIPMENT,
            _Q.CUSTOMER_SERVICE,
            _V.HIGH,
            0 * H,
            D,
            damaged_or_refused,
        ),
        Detector(
            "delivered_not_invoiced",
            "Delivered, not invoiced",
            _S.ORDER,
            _Q.FINANCE,
            _V.HIGH,
            24 * H,
            2 * D,
            delivered_not_invoiced,
        ),
        Detector("invoice_held", "Invoice held", _S.INVOICE, _Q.FINANCE, _V.HIGH, 0 * H, 2 * D, invoice_held),
        Detector(
            "freight_unsettled",
            "Freight charge unsettled",
            _S.FREIGHT_CHARGE,
            _Q.FINANCE,
            _V.LOW,
            30 * D,
            5 * D,
            freight_unsettled,
        ),
        Detector(
            "freight_disputed_or_over_quote",
            "Freight disputed or above quote",
            _S.FREIGHT_CHARGE,
            _Q.FINANCE,
            _V.MEDIUM,
            0 * H,
            5 * D,
            freight_disputed_or_over_quote,
            Decimal("0.05"),
        ),
        Detector(
            "parked_too_long",
            "Event matches nothing",
            _S.PARKED_EVENT,
            _Q.INTEGRATION,
            _V.LOW,
            24 * H,
            2 * D,
            parked_too_long,
        ),
        Detector("dead_letter", "Dead-lettered message", _S.MESSAGE, _Q.INTEGRATION, _V.HIGH, 0 * H, D, dead_letter),
    )
}
