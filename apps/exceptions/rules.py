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

from django.db.models import BooleanField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest

from apps.billing.models import FreightCharge, Invoice
from apps.exceptions.models import ExceptionCase, ExceptionRule, Queue, Severity, SubjectType
from apps.ingest.models import InboundMessage
from apps.inventory.selectors import (
    DEFAULT_MISMATCH_PERCENT,
    mismatched_positions,
    positions_over_promised,
    shipments_short_of_stock,
    stale_feeds,
)
from apps.predictions.models import RiskThreshold
from apps.timeline.events import EventKind
from apps.timeline.models import Milestone, Order, ParkedEvent, Shipment

SUMMARY_LENGTH = ExceptionCase._meta.get_field("summary").max_length
# Subjects no order touches: their rules run on the periodic sweep only.
SWEEP_ONLY = (SubjectType.MESSAGE, SubjectType.PARKED_EVENT, SubjectType.STOCK_POSITION, SubjectType.STOCK_FEED)


@dataclass(frozen=True)
class Scope:
    """What a detection after an apply looks at: the touched orders, and every shipment of theirs.
    A detector given ``None`` instead looks at every subject (the sweep)."""

    order_ids: set[int]
    shipment_ids: set[int]


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
    find: Callable[[ExceptionRule, datetime, Scope | None], Iterable[Hit]]
    tolerance: Decimal | None = None
    # A case closed by hand holds back a new one until the condition clears; a detector that
    # tells new trouble from handled trouble itself (damage never "clears") opts out.
    hold_after_manual_close: bool = True

    @property
    def order_scoped(self) -> bool:
        """Whether an apply's touched orders can change this rule's answer (else: sweep only)."""
        return self.subject_type not in SWEEP_ONLY


# --- scoping ----------------------------------------------------------------------------------


def _orders(rule: ExceptionRule, scope: Scope | None) -> QuerySet[Order]:
    orders = Order.objects.filter(cancelled_at__isnull=True)
    if scope is not None:
        orders = orders.filter(id__any=scope.order_ids)
    if rule.scope_customer_id:
        orders = orders.filter(customer_id=rule.scope_customer_id)
    if rule.scope_region:
        orders = orders.filter(region=rule.scope_region)
    if rule.scope_partner_id:
        orders = orders.filter(
            Q(shipments__carrier_id=rule.scope_partner_id) | Q(shipments__warehouse_id=rule.scope_partner_id)
        ).distinct()
    return orders


def _shipments(rule: ExceptionRule, scope: Scope | None) -> QuerySet[Shipment]:
    """The shipments of the rule's scope; after an apply, those of the touched orders, named by id
    (no join through their orders, nor the DISTINCT it needs, unless the rule is scoped to a
    customer or a region)."""
    shipments = Shipment.objects.all()
    if scope is not None:
        shipments = shipments.filter(id__any=scope.shipment_ids)
    if rule.scope_partner_id:
        shipments = shipments.filter(Q(carrier_id=rule.scope_partner_id) | Q(warehouse_id=rule.scope_partner_id))
    if rule.scope_customer_id:
        shipments = shipments.filter(orders__customer_id=rule.scope_customer_id)
    if rule.scope_region:
        shipments = shipments.filter(orders__region=rule.scope_region)
    # Through its orders a shipment comes once per order: once each.
    return shipments.distinct() if rule.scope_customer_id or rule.scope_region else shipments


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
    rows = list(shipments.values("id", "number", "tracking_number", "carrier_id"))
    goods = _orders_of_shipments({row["id"] for row in rows})
    hits = []
    for row in rows:
        order = goods.get(row["id"], _NO_ORDER)
        hits.append(
            Hit(
                subject_id=row["id"],
                summary=describe(row),
                order_id=order["id"],
                shipment_id=row["id"],
                partner_id=row["carrier_id"],
                customer_id=order["customer_id"],
                region=order["region"],
                amount=order["total"],
                currency=order["currency"],
            )
        )
    return hits


_NO_ORDER: dict = {"id": None, "customer_id": None, "region": "", "currency": "", "total": None}


def _orders_of_shipments(shipment_ids: set[int]) -> dict[int, dict]:
    """Per shipment: its first order (lowest id; the order its case is filed under), with that
    order's customer, region and currency, and ``total``, the value of every order it carries.

    One query over the shipment-order links, whatever filters chose the shipments: summing
    through the detector's own joins would count only the orders those joins kept, or count
    each order once per other joined row.
    """
    links = (
        Shipment.orders.through.objects.filter(shipment_id__any=shipment_ids)
        .order_by("shipment_id", "order_id")
        .values_list(
            "shipment_id", "order_id", "order__customer_id", "order__region", "order__currency", "order__total_amount"
        )
    )
    orders: dict[int, dict] = {}
    for shipment_id, order_id, customer_id, region, currency, total in links:
        first = orders.setdefault(
            shipment_id,
            {"id": order_id, "customer_id": customer_id, "region": region, "currency": currency, "total": None},
        )
        if total is not None:
            first["total"] = (first["total"] or Decimal(0)) + total
    return orders


# --- orders -----------------------------------------------------------------------------------


def released_not_picked(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    # A warehouse that reports packing but not picking has picked all the same.
    orders = _orders(rule, scope).filter(
        released_at__lte=now - rule.threshold, picked_at__isnull=True, packed_at__isnull=True, shipped_at__isnull=True
    )
    return _order_hits(orders, lambda o: f"Order {o['number']} released but not picked")


def picked_not_shipped(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    cutoff = now - rule.threshold
    orders = _orders(rule, scope).filter(
        Q(picked_at__lte=cutoff) | Q(picked_at__isnull=True, packed_at__lte=cutoff), shipped_at__isnull=True
    )
    return _order_hits(orders, lambda o: f"Order {o['number']} picked but not shipped")


def late_against_promise(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    orders = _orders(rule, scope).filter(promised_at__lte=now - rule.threshold, delivered_at__isnull=True)
    return _order_hits(orders, lambda o: f"Order {o['number']} not delivered by its promised date")


def delivered_not_invoiced(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    # Any invoice counts, whatever its first event was: one held at once, or only ever posted.
    orders = (
        _orders(rule, scope)
        .filter(delivered_at__lte=now - rule.threshold, invoiced_at__isnull=True, posted_at__isnull=True)
        .exclude(Exists(Invoice.objects.filter(order_id=OuterRef("pk"))))
    )
    return _order_hits(orders, lambda o: f"Order {o['number']} delivered but not invoiced")


# --- shipments --------------------------------------------------------------------------------


def manifested_without_tracking(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    shipments = _shipments(rule, scope).filter(
        manifested_at__lte=now - rule.threshold, tracking_number="", delivered_at__isnull=True
    )
    return _shipment_hits(shipments, lambda s: f"Shipment {s['number']} manifested without tracking")


def tracking_stale(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    # The last time we heard of it: the latest of the three, whichever are known (GREATEST is
    # NULL on SQLite as soon as one argument is, so each argument falls back on the others).
    a, t, m = "last_carrier_event_at", "tracking_assigned_at", "manifested_at"
    shipments = (
        _shipments(rule, scope)
        .exclude(tracking_number="")
        .filter(delivered_at__isnull=True)
        .annotate(last_heard=Greatest(Coalesce(a, t, m), Coalesce(t, m, a), Coalesce(m, a, t)))
        .filter(last_heard__lte=now - rule.threshold)
    )
    return _shipment_hits(shipments, lambda s: f"No carrier news for shipment {s['number']} ({s['tracking_number']})")


def at_risk(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    """An order likely to arrive after its promise: one case per order, naming its riskiest shipment.

    With a predicted probability (``OrderRisk``, the highest of its open shipments'): a case opens
    above the customer's threshold and, once open, holds until the probability falls below the
    lower closing one. A shipment of the order without a probability yet keeps the older rule: its
    carrier's estimate is after the promise, for as long as the rule's threshold (counted from the
    latest milestone carrying that estimate).
    """
    case_open = ExceptionCase.objects.filter(
        rule=rule, subject_type=SubjectType.ORDER, subject_id=OuterRef("pk"), status__in=ExceptionCase.OPEN_STATUSES
    )
    open_above = Coalesce(F("customer__risk_threshold__open_above"), Value(RiskThreshold.DEFAULT_OPEN_ABOVE))
    close_below = Coalesce(F("customer__risk_threshold__close_below"), Value(RiskThreshold.DEFAULT_CLOSE_BELOW))
    likely = Q(risk__late_probability__gte=open_above) | Q(Exists(case_open), risk__late_probability__gte=close_below)
    estimated_since = Subquery(
        Milestone.objects.filter(shipment_id=OuterRef("pk"), estimated_delivery_at__isnull=False)
        .order_by("-occurred_at", "-event_id")
        .values("occurred_at")[:1]
    )
    estimated_late = (
        Shipment.objects.filter(
            orders=OuterRef("pk"),
            delivered_at__isnull=True,
            estimated_delivery_at__gt=OuterRef("promised_at"),
        )
        .exclude(prediction__late_probability__isnull=False)
        .annotate(estimated_since=estimated_since)
        .filter(estimated_since__lte=now - rule.threshold)
        .order_by("estimated_delivery_at", "id")
    )
    orders = (
        _orders(rule, scope)
        .filter(delivered_at__isnull=True)
        .annotate(
            late_estimate=Subquery(estimated_late.values("id")[:1]),
            likely=ExpressionWrapper(likely, output_field=BooleanField()),
        )
        .filter(Q(likely=True) | Q(late_estimate__isnull=False))
    )
    rows = list(
        orders.values(
            "id",
            "number",
            "customer_id",
            "region",
            "total_amount",
            "currency",
            "likely",
            "late_estimate",
            "risk__shipment_id",
        )
    )
    for row in rows:  # the shipment the case names: the riskiest, or the one its carrier says is late
        row["named"] = row["risk__shipment_id"] if row["likely"] else row["late_estimate"]
    riskiest = _riskiest_shipments(rows)
    hits = []
    for row in rows:
        shipment = riskiest.get(row["named"])
        hits.append(
            Hit(
                subject_id=row["id"],
                summary=_describe_risk(row["number"], shipment),
                order_id=row["id"],
                shipment_id=shipment["id"] if shipment else None,
                partner_id=shipment["carrier_id"] if shipment else None,
                customer_id=row["customer_id"],
                region=row["region"],
                amount=row["total_amount"],
                currency=row["currency"],
            )
        )
    return hits


def _riskiest_shipments(rows: list[dict]) -> dict[int, dict]:
    """The shipments the at-risk hits name, with their carrier and prediction: one query."""
    ids = {row["named"] for row in rows} - {None}
    shipments = Shipment.objects.filter(id__any=ids).values(
        "id", "number", "carrier_id", "carrier__name", "prediction__late_probability", "prediction__reasons"
    )
    return {shipment["id"]: shipment for shipment in shipments}


def _describe_risk(order_number: str, shipment: dict | None) -> str:
    if shipment is None:
        return f"Order {order_number} expected after the promised date"
    probability = shipment["prediction__late_probability"]
    if probability is None:
        carrier = shipment["carrier__name"] or "the carrier"
        return f"Order {order_number}: shipment {shipment['number']} estimated by {carrier} after the promised date"
    reasons = " ".join(shipment["prediction__reasons"] or [])
    summary = f"Order {order_number}: {probability:.0%} likely after the promised date; shipment {shipment['number']}"
    summary += f": {reasons}" if reasons else ""
    return summary if len(summary) <= SUMMARY_LENGTH else f"{summary[: SUMMARY_LENGTH - 1]}…"


def delivery_attempt_failed(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    shipments = _shipments(rule, scope).filter(
        delivery_attempted_at__lte=now - rule.threshold, delivered_at__isnull=True
    )
    return _shipment_hits(shipments, lambda s: f"Delivery of shipment {s['number']} failed")


def damaged_or_refused(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    """Damage and refusal never clear by themselves, so a person closes the case. A shipment
    closed by hand stays closed until a new damage or refusal is recorded after the closing
    (recorded, not occurred: a late report of an older incident is news to the person)."""
    reported_at = Subquery(
        Milestone.objects.filter(
            shipment_id=OuterRef("pk"), kind__in=[EventKind.SHIPMENT_DAMAGED, EventKind.SHIPMENT_REFUSED]
        )
        .order_by("-recorded_at")
        .values("recorded_at")[:1]
    )
    handled = ExceptionCase.objects.filter(
        rule=rule,
        subject_type=SubjectType.SHIPMENT,
        subject_id=OuterRef("pk"),
        status__in=[ExceptionCase.Status.RESOLVED, ExceptionCase.Status.DISMISSED],
        resolved_at__gte=OuterRef("reported_at"),
    ).exclude(resolution="auto")
    shipments = (
        _shipments(rule, scope)
        .filter(Q(damaged_at__lte=now - rule.threshold) | Q(refused_at__lte=now - rule.threshold))
        .annotate(reported_at=reported_at)
        .exclude(Exists(handled))
    )
    return _shipment_hits(shipments, lambda s: f"Shipment {s['number']} damaged or refused")


# --- money ------------------------------------------------------------------------------------


def _invoices(rule: ExceptionRule, scope: Scope | None) -> QuerySet[Invoice]:
    return Invoice.objects.filter(order__in=_orders(rule, scope))


def invoice_held(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    rows = (
        _invoices(rule, scope)
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


def _freight_hits(
    charges: QuerySet[FreightCharge], describe: Callable[[dict], str], amount: Callable[[dict], Decimal | None]
) -> list[Hit]:
    rows = list(charges.values("id", "number", "amount", "quoted_amount", "currency", "carrier_id", "shipment_id"))
    orders = _orders_of_shipments({row["shipment_id"] for row in rows})
    hits = []
    for row in rows:
        order = orders.get(row["shipment_id"], _NO_ORDER)
        hits.append(
            Hit(
                subject_id=row["id"],
                summary=describe(row),
                order_id=order["id"],
                shipment_id=row["shipment_id"],
                partner_id=row["carrier_id"],
                customer_id=order["customer_id"],
                region=order["region"],
                amount=amount(row),
                currency=row["currency"],
            )
        )
    return hits


def _charges(rule: ExceptionRule, scope: Scope | None) -> QuerySet[FreightCharge]:
    return FreightCharge.objects.filter(shipment__in=_shipments(rule, scope))


def freight_unsettled(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    charges = _charges(rule, scope).filter(posted_at__lte=now - rule.threshold, settled_at__isnull=True)
    return _freight_hits(charges, lambda c: f"Freight charge {c['number']} not settled", lambda c: c["amount"])


def freight_disputed_or_over_quote(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    cutoff = now - rule.threshold
    factor = 1 + (rule.tolerance or Decimal(0))
    over_quote = Q(quoted_amount__isnull=False, amount__gt=F("quoted_amount") * factor, posted_at__lte=cutoff)
    disputed = Q(status=FreightCharge.Status.DISPUTED, disputed_at__lte=cutoff)
    charges = _charges(rule, scope).filter(settled_at__isnull=True).filter(disputed | over_quote)
    return _freight_hits(charges, _describe_freight_issue, _freight_excess)


def _freight_excess(charge: dict) -> Decimal | None:
    """Above its quote, the excess is what is at stake; otherwise the whole disputed charge."""
    amount, quoted = charge["amount"], charge["quoted_amount"]
    if amount is not None and quoted is not None and amount > quoted:
        return amount - quoted
    return amount


def _describe_freight_issue(charge: dict) -> str:
    """No figures: the summary shows to every role, the amount at risk only to those who see freight amounts."""
    amount, quoted = charge["amount"], charge["quoted_amount"]
    if amount is not None and quoted is not None and amount > quoted:
        return f"Freight charge {charge['number']} above its quote"
    return f"Freight charge {charge['number']} disputed"


# --- integration ------------------------------------------------------------------------------


def parked_too_long(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
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


def dead_letter(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    # A dead letter is dated by when it failed; one marked dead without that, by its arrival.
    messages = InboundMessage.objects.annotate(failed_at=Coalesce("processed_at", "received_at")).filter(
        status__in=[InboundMessage.Status.DEAD, InboundMessage.Status.FAILED], failed_at__lte=now - rule.threshold
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


# --- inventory --------------------------------------------------------------------------------


def _position_hits(positions: QuerySet, describe: Callable[[dict], str]) -> list[Hit]:
    rows = positions.values(
        "id", "sku", "uom", "warehouse_id", "warehouse__code", "quantity", "book_quantity", "allocated", "atp"
    )
    return [Hit(subject_id=row["id"], summary=describe(row), partner_id=row["warehouse_id"]) for row in rows]


def stock_mismatch(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    """On hand and book stock differ beyond the tolerance, and both figures are at least
    ``threshold`` old (movements posted late in one system get that long to arrive)."""
    found = mismatched_positions(default_percent=rule.tolerance or Decimal(0), warehouse_id=rule.scope_partner_id)
    cutoff = now - rule.threshold
    return _position_hits(
        found.filter(as_of__lte=cutoff, book_as_of__lte=cutoff),
        lambda p: (
            f"{p['warehouse__code']} {p['sku']}: on hand {p['quantity']:f} {p['uom']}, book {p['book_quantity']:f}"
        ),
    )


def negative_atp(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    found = positions_over_promised(warehouse_id=rule.scope_partner_id)
    return _position_hits(
        found.filter(as_of__lte=now - rule.threshold),
        lambda p: (
            f"{p['warehouse__code']} {p['sku']}: {p['allocated']:f} {p['uom']} promised, {p['quantity']:f} on hand"
        ),
    )


def shipped_without_stock(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    """A ship notice for more than the warehouse had on hand; it stays until a person closes it,
    or a count reported late shows the stock was there."""
    shipments = _shipments(rule, scope).filter(manifested_at__lte=now - rule.threshold)
    if scope is not None:  # a few shipments, named by id (see shipments_short_of_stock)
        shipments = list(shipments.values_list("id", flat=True))
    return _shipment_hits(
        shipments_short_of_stock(shipments),
        lambda s: f"Shipment {s['number']} shipped more than its warehouse had on hand",
    )


def stock_snapshot_stale(rule: ExceptionRule, now: datetime, scope: Scope | None) -> list[Hit]:
    feeds = stale_feeds(now=now, grace=rule.threshold, warehouse_id=rule.scope_partner_id)
    return [
        Hit(
            subject_id=feed.id,
            summary=f"No stock snapshot from {feed.warehouse.code} since {feed.last_snapshot_at:%Y-%m-%d %H:%M} UTC",
            partner_id=feed.warehouse_id,
        )
        for feed in feeds
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
            _S.ORDER,
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
            hold_after_manual_close=False,
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
        Detector(
            "stock_mismatch",
            "Stock: on hand differs from book",
            _S.STOCK_POSITION,
            _Q.SUPPLY_CHAIN,
            _V.MEDIUM,
            0 * H,
            2 * D,
            stock_mismatch,
            DEFAULT_MISMATCH_PERCENT,
        ),
        Detector(
            "negative_atp",
            "Stock: more promised than on hand",
            _S.STOCK_POSITION,
            _Q.SUPPLY_CHAIN,
            _V.HIGH,
            0 * H,
            D,
            negative_atp,
        ),
        Detector(
            "shipped_without_stock",
            "Stock: shipped more than on hand",
            _S.SHIPMENT,
            _Q.SUPPLY_CHAIN,
            _V.HIGH,
            0 * H,
            D,
            shipped_without_stock,
        ),
        Detector(
            "stock_snapshot_stale",
            "Stock: snapshot late",
            _S.STOCK_FEED,
            _Q.SUPPLY_CHAIN,
            _V.MEDIUM,
            4 * H,
            D,
            stock_snapshot_stale,
        ),
    )
}
