"""Reads of the order timeline: find orders by any reference, list them, assemble one timeline.

Every function runs a fixed number of queries, whatever the number of orders, shipments or
milestones involved.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import (
    BooleanField,
    Case,
    Count,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.billing.models import FreightCharge, Invoice, ReturnAuthorization
from apps.exceptions.models import ExceptionCase
from apps.timeline.events import normalize_reference
from apps.timeline.models import (
    Milestone,
    MilestoneReport,
    Order,
    OrderLine,
    OrderStage,
    Reference,
    Shipment,
    ShipmentStatus,
)
from controltower.keyset import Key, ordering

# A typed reference shorter than this matches exactly only: "SO-1" must not list every SO-1xxxx.
PREFIX_MIN_LENGTH = 6
MAX_CANDIDATES = 50
DELIVERED_STATUSES = (ShipmentStatus.DELIVERED, ShipmentStatus.POD_RECEIVED)


@dataclass(frozen=True, order=True)
class Match:
    """One way a typed reference reached an order: ``kind`` is a reference kind, ``value`` what matched."""

    kind: str
    value: str
    exact: bool


@dataclass(frozen=True)
class OrderMatch:
    order: Order
    matches: tuple[Match, ...]

    @property
    def exact(self) -> bool:
        return any(match.exact for match in self.matches)


def find_orders(query: str, *, limit: int = MAX_CANDIDATES, with_references: bool = False) -> list[OrderMatch]:
    """Orders a reference typed by a user resolves to, exact matches first and alone when any.

    Matches any reference kind (a shipment's references resolve to the shipment's orders), order
    numbers, shipment numbers and tracking numbers. When nothing matches exactly and the value is
    at least ``PREFIX_MIN_LENGTH`` characters long, the references that start with it match.
    ``with_references`` prefetches each order's references and its shipments' references.
    """
    value = normalize_reference(query)
    if not value:
        return []
    hits = _hits(value, exact=True, limit=limit)
    if not hits and len(value) >= PREFIX_MIN_LENGTH:
        hits = _hits(value, exact=False, limit=limit)
    if not hits:
        return []
    orders = Order.objects.select_related("customer").filter(id__in=hits).order_by("number")
    if with_references:
        orders = orders.prefetch_related("references", "shipments__references")
    orders = orders[:limit]
    return [OrderMatch(order=order, matches=tuple(sorted(hits[order.id]))) for order in orders]


def _hits(value: str, *, exact: bool, limit: int) -> dict[int, set[Match]]:
    """Order id -> how it matched, in four queries."""

    def lookup(field: str) -> Q:
        return Q(**{field: value}) if exact else Q(**{f"{field}__startswith": value})

    def matches(candidate: str) -> bool:
        return candidate == value if exact else candidate.startswith(value)

    hits: dict[int, set[Match]] = defaultdict(set)
    by_shipment: dict[int, set[Match]] = defaultdict(set)
    row_limit = limit * 4
    references = Reference.objects.filter(lookup("value")).values_list("kind", "value", "order_id", "shipment_id")
    for kind, matched, order_id, shipment_id in references.order_by("value")[:row_limit]:
        if order_id:
            hits[order_id].add(Match(kind, matched, exact))
        else:
            by_shipment[shipment_id].add(Match(kind, matched, exact))
    for order_id, number in Order.objects.filter(lookup("number")).values_list("id", "number")[:row_limit]:
        hits[order_id].add(Match("order", number, exact))
    shipments = Shipment.objects.filter(lookup("number") | lookup("tracking_number"))
    for shipment_id, number, tracking in shipments.values_list("id", "number", "tracking_number")[:row_limit]:
        if matches(number):
            by_shipment[shipment_id].add(Match("shipment", number, exact))
        if matches(tracking):
            by_shipment[shipment_id].add(Match("tracking", tracking, exact))
    if by_shipment:
        links = Shipment.orders.through.objects.filter(shipment_id__in=by_shipment)
        for shipment_id, order_id in links.values_list("shipment_id", "order_id"):
            hits[order_id] |= by_shipment[shipment_id]
    return hits


def late_condition(now: datetime) -> Q:
    """Late: promised and not delivered by now (unless cancelled), or delivered after the promise."""
    open_past_promise = Q(promised_at__lt=now, delivered_at__isnull=True) & ~Q(stage=OrderStage.CANCELLED)
    return open_past_promise | Q(delivered_at__gt=F("promised_at"))


def _with_late(orders: QuerySet[Order], now: datetime) -> QuerySet[Order]:
    return orders.annotate(
        is_late=Case(When(late_condition(now), then=Value(True)), default=Value(False), output_field=BooleanField())
    )


def order_list(
    *, stage: str = "", late_only: bool = False, min_risk: float | None = None, by_risk: bool = False
) -> QuerySet[Order]:
    """Recent orders, newest first, each with ``is_late``, ``late_probability``, ``open_cases`` and
    ``listed_shipments``. ``min_risk`` (0 to 1) keeps the orders at least that likely to miss their
    promise; ``by_risk`` lists the orders with a risk (on their way), the most likely late first,
    read through the index of the risks.

    A page of them costs two queries whatever its size: the orders (the open-case count is a
    subquery on each row of the page, read through the cases' order index; a count of the list
    leaves it out) and their shipments with carriers, in manifest order.
    """
    now = timezone.now()
    open_cases = (
        ExceptionCase.objects.filter(order=OuterRef("pk"), status__in=ExceptionCase.OPEN_STATUSES)
        .order_by()
        .values("order")
        .annotate(count=Count("id"))
        .values("count")
    )
    shipments = Shipment.objects.select_related("carrier").only(
        "number", "tracking_number", "status", "manifested_at", "carrier__name"
    )
    orders = _with_late(
        Order.objects.select_related("customer")
        .annotate(open_cases=Coalesce(Subquery(open_cases, output_field=IntegerField()), 0))
        .prefetch_related(
            Prefetch(
                "shipments",
                queryset=shipments.order_by(F("manifested_at").asc(nulls_last=True), "id"),
                to_attr="listed_shipments",
            )
        ),
        now,
    )
    if stage:
        orders = orders.filter(stage=stage)
    if late_only:
        orders = orders.filter(late_condition(now))
    orders = orders.annotate(late_probability=F("risk__late_probability"))
    if min_risk is not None:
        orders = orders.filter(late_probability__gte=min_risk)
    if by_risk:
        return orders.filter(late_probability__isnull=False).order_by(*ordering(ORDER_LIST_BY_RISK))
    return orders.order_by(*ordering(ORDER_LIST_ORDER))


# Newest first, as keys for keyset pagination (``controltower.keyset``); indexed by order_recent_first.
ORDER_LIST_ORDER = [Key("ordered_at", descending=True, nullable=True), Key("id", descending=True)]
# The most likely late first; indexed by order_risk_by_risk (``apps.predictions``).
ORDER_LIST_BY_RISK = [Key("late_probability", descending=True), Key("id", descending=True)]


@dataclass(frozen=True)
class TimelineShipment:
    shipment: Shipment
    at_risk: bool


@dataclass(frozen=True)
class OrderTimeline:
    """Everything customer service needs about one order, read in a constant number of queries."""

    order: Order
    late: bool
    lines: list[OrderLine]
    shipments: list[TimelineShipment]
    milestones: list[Milestone]
    freight_charges: list[FreightCharge]
    invoices: list[Invoice]
    returns: list[ReturnAuthorization]

    @property
    def at_risk(self) -> bool:
        return any(row.at_risk for row in self.shipments)

    @property
    def invoiced_amount(self) -> Decimal | None:
        amounts = [invoice.amount for invoice in self.invoices if invoice.amount is not None]
        return sum(amounts, Decimal(0)) if amounts else None


def order_timeline(order_id: int) -> OrderTimeline | None:
    """The timeline of one order, or None when there is no such order.

    Milestones are the order's own and those of every shipment it travels in, in time order.
    A shipment is at risk when it is not delivered and its estimate is after the promised date.
    """
    order = _with_late(Order.objects.select_related("customer"), timezone.now()).filter(id=order_id).first()
    if order is None:
        return None
    shipments = list(
        order.shipments.select_related("carrier", "warehouse")
        .prefetch_related("references")
        .order_by(F("manifested_at").asc(nulls_last=True), "id")
    )
    shipment_ids = [shipment.id for shipment in shipments]
    milestones = list(
        Milestone.objects.filter(Q(order_id=order.id) | Q(shipment_id__in=shipment_ids))
        .select_related("source_partner", "source_channel", "shipment")
        .prefetch_related(
            Prefetch(
                "other_reports",
                queryset=MilestoneReport.objects.select_related("source_partner", "source_channel"),
            )
        )
        .order_by("occurred_at", "event_id")
    )
    return OrderTimeline(
        order=order,
        late=order.is_late,
        lines=list(order.lines.all()),
        shipments=[TimelineShipment(shipment=s, at_risk=_at_risk(s, order.promised_at)) for s in shipments],
        milestones=milestones,
        freight_charges=list(
            FreightCharge.objects.filter(shipment_id__in=shipment_ids).select_related("carrier", "shipment")
        ),
        invoices=list(order.invoices.all()),
        returns=list(order.returns.all()),
    )


def _at_risk(shipment: Shipment, promised_at: datetime | None) -> bool:
    if promised_at is None or shipment.estimated_delivery_at is None or shipment.status in DELIVERED_STATUSES:
        return False
    return shipment.estimated_delivery_at > promised_at


# The first page after sign-in: orders late against their promise.
LATE_ORDERS_SHOWN = 8
# Orders late against a promise made more than this long ago are not "now" any more (the
# customer-service queue holds them); the window bounds the index range read.
LATE_WINDOW = timedelta(days=30)


def late_orders(now: datetime) -> tuple[list[Order], bool]:
    """Open orders past their promise, the most recently late first (and whether there are more).

    Read backwards through ``order_open_by_promise`` (undelivered orders by promise) from now to
    ``LATE_WINDOW`` ago, stopping after ``LATE_ORDERS_SHOWN + 1``.
    """
    orders = (
        Order.objects.filter(late_condition(now), delivered_at__isnull=True, promised_at__lt=now)
        .filter(promised_at__gte=now - LATE_WINDOW)
        .exclude(stage=OrderStage.CANCELLED)
        .select_related("customer")
        .order_by("-promised_at", "-id")
    )
    found = list(orders[: LATE_ORDERS_SHOWN + 1])
    return found[:LATE_ORDERS_SHOWN], len(found) > LATE_ORDERS_SHOWN
