"""Partner scopes, applied: an event is refused unless its sender may say it about its subject.

A token fixes who an event is attributed to; its scopes (and its channel's) fix what it may say:
which kinds, and about whose orders and shipments (``apps.partners.scopes``). The check runs on
every apply round, parked events included when they come back, so nothing out of scope is ever
applied whatever the arrival order. An event whose subject is not known yet cannot be judged:
it is deferred (parked) and judged when its subject appears. Our own people and tools (events
without a source partner) are not limited here: their permissions are checked where they act.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.partners.models import Channel, Partner
from apps.partners.scopes import SCOPES, Rule, default_scopes
from apps.timeline.events import ORDER_REFERENCE_KINDS, SHIPMENT_REFERENCE_KINDS, CanonicalEvent, EventKey, EventKind
from apps.timeline.models import Milestone, Order, Shipment

DEFER = "defer"

Resolve = Callable[[CanonicalEvent], tuple[list[int], int | None]]


@dataclass
class Verdict:
    refused: dict[EventKey, str] = field(default_factory=dict)
    deferred: list[CanonicalEvent] = field(default_factory=list)
    allowed: list[CanonicalEvent] = field(default_factory=list)


def future_margin() -> timedelta:
    return timedelta(seconds=settings.EVENT_FUTURE_MARGIN_SECONDS)


def judge(events: Iterable[CanonicalEvent], partners: dict[str, Partner], resolve: Resolve) -> Verdict:
    """Sort ``events`` into allowed, deferred (subject unknown yet) and refused (with the reason).

    ``resolve`` gives an event's known orders and shipment. Facts about those subjects are read
    once for the whole batch, and only for events whose scopes depend on them.
    """
    verdict = Verdict()
    latest = timezone.now() + future_margin()
    restricted: list[tuple[CanonicalEvent, Partner, list]] = []
    for event in events:
        if event.occurred_at > latest:
            verdict.refused[event.key] = (
                f"dated {event.occurred_at.isoformat()}, more than {_hours(future_margin())} ahead of now: "
                "events from the future are refused"
            )
            continue
        sender = partners.get(event.source.partner or "")
        if sender is None:
            verdict.allowed.append(event)
            continue
        names = event.source.scopes if event.source.scopes is not None else default_scopes(sender.kind)
        scopes = [SCOPES[name] for name in names if name in SCOPES and event.kind.value in SCOPES[name].kinds]
        if not scopes:
            verdict.refused[event.key] = (
                f"{sender.code} may not send {event.kind.value} (its scopes: {', '.join(names) or 'none'})"
            )
        elif any(scope.rule == Rule.ANY for scope in scopes):
            verdict.allowed.append(event)
        else:
            restricted.append((event, sender, scopes))
    if restricted:
        _judge_subjects(restricted, resolve, verdict)
    return verdict


def _hours(margin: timedelta) -> str:
    hours = margin.total_seconds() / 3600
    return f"{hours:g} hour" + ("" if hours == 1 else "s")


def _judge_subjects(restricted: list[tuple[CanonicalEvent, Partner, list]], resolve: Resolve, verdict: Verdict) -> None:
    subjects = {event.key: resolve(event) for event, _, _ in restricted}
    facts = _Facts.load(subjects.values())
    facts.load_shop_customers({(sender, event.source.channel) for event, sender, _ in restricted})
    for event, sender, scopes in restricted:
        order_ids, shipment_id = subjects[event.key]
        outcomes = [RULES[scope.rule](event, sender, order_ids, shipment_id, facts) for scope in scopes]
        if None in outcomes:
            verdict.allowed.append(event)
        elif DEFER in outcomes:
            verdict.deferred.append(event)
        else:
            verdict.refused[event.key] = f"{event.kind.value}: {outcomes[0]}"


@dataclass
class _Facts:
    """What the rules need to know about the subjects of one batch."""

    customer: dict[int, int | None] = field(default_factory=dict)
    created_by: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    released_to: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    carriers: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    warehouse: dict[int, int | None] = field(default_factory=dict)
    shipment_orders: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    # (shop partner id, channel code) -> (customer id, customer code) the channel sends orders for
    shop_customers: dict[tuple[int, str], tuple[int, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, subjects: Iterable[tuple[list[int], int | None]]) -> "_Facts":
        facts = cls()
        subjects = list(subjects)
        shipment_ids = {shipment_id for _, shipment_id in subjects if shipment_id}
        if shipment_ids:
            facts._load_shipments(shipment_ids)
        order_ids = {order_id for order_ids, _ in subjects for order_id in order_ids}
        order_ids |= {order_id for orders in facts.shipment_orders.values() for order_id in orders}
        if order_ids:
            facts._load_orders(order_ids)
        return facts

    def _load_shipments(self, ids: set[int]) -> None:
        for shipment_id, carrier, warehouse_id in Shipment.objects.filter(pk__any=ids).values_list(
            "pk", "carrier__code", "warehouse_id"
        ):
            self.warehouse[shipment_id] = warehouse_id
            if carrier:
                self.carriers[shipment_id].add(carrier)
        naming = Milestone.objects.filter(
            shipment_id__any=ids, kind__in=[EventKind.SHIPMENT_MANIFESTED, EventKind.SHIPMENT_TRACKING_ASSIGNED]
        )
        for shipment_id, carrier in naming.values_list("shipment_id", "payload__attributes__carrier"):
            if isinstance(carrier, str) and carrier:
                self.carriers[shipment_id].add(carrier)
        through = Shipment.orders.through
        for shipment_id, order_id in through.objects.filter(shipment_id__any=ids).values_list(
            "shipment_id", "order_id"
        ):
            self.shipment_orders[shipment_id].add(order_id)

    def load_shop_customers(self, senders: set[tuple[Partner, str | None]]) -> None:
        shops = {(sender.pk, code) for sender, code in senders if sender.kind == Partner.Kind.SHOP and code}
        if not shops:
            return
        rows = Channel.objects.filter(
            partner_id__in={pk for pk, _ in shops}, code__in={code for _, code in shops}, customer__isnull=False
        ).values_list("partner_id", "code", "customer_id", "customer__code")
        for partner_id, code, customer_id, customer_code in rows:
            if (partner_id, code) in shops:
                self.shop_customers[(partner_id, code)] = (customer_id, customer_code)

    def acting_for(self, event: CanonicalEvent, sender: Partner) -> dict[int, str]:
        """The customers whose orders ``sender`` may speak of, by id: itself, and the customer the
        shop channel the event came through sends orders for."""
        customers = {sender.pk: sender.code}
        shop_customer = self.shop_customers.get((sender.pk, event.source.channel or ""))
        if shop_customer:
            customers[shop_customer[0]] = shop_customer[1]
        return customers

    def _load_orders(self, ids: set[int]) -> None:
        self.customer.update(Order.objects.filter(pk__any=ids).values_list("pk", "customer_id"))
        milestones = Milestone.objects.filter(
            order_id__any=ids, kind__in=[EventKind.ORDER_CREATED, EventKind.ORDER_RELEASED]
        ).values_list("order_id", "kind", "source_partner_id", "payload__attributes__warehouse")
        for order_id, kind, source_id, warehouse in milestones:
            if kind == EventKind.ORDER_CREATED and source_id:
                self.created_by[order_id].add(source_id)
            elif kind == EventKind.ORDER_RELEASED and isinstance(warehouse, str) and warehouse:
                self.released_to[order_id].add(warehouse)


Outcome = str | None  # None: allowed; DEFER: judge later; any other text: refused, and why


def _own_order(
    event: CanonicalEvent, sender: Partner, order_ids: list[int], shipment_id: int | None, facts: _Facts
) -> Outcome:
    own = facts.acting_for(event, sender)
    customer = event.order.customer if event.order else None
    if customer and customer not in own.values():
        return f"the order names customer {customer}; {sender.code} may send only its own orders{_also(own)}"
    orders = _orders_of(event, order_ids, shipment_id, facts)
    if orders is None:
        return None if event.kind == EventKind.ORDER_CREATED else DEFER
    for order_id in orders:
        if facts.customer.get(order_id) not in own and sender.pk not in facts.created_by[order_id]:
            return f"the order is not one of {sender.code}'s own orders{_also(own)}"
    return None


def _also(customers: dict[int, str]) -> str:
    """Besides the sender's own orders: those of the customer its shop channel sends for."""
    others = list(customers.values())[1:]
    return "".join(f" or {code}'s" for code in others)


def _released_to(
    event: CanonicalEvent, sender: Partner, order_ids: list[int], shipment_id: int | None, facts: _Facts
) -> Outcome:
    warehouse = event.attributes.get("warehouse")
    if warehouse and warehouse != sender.code:
        return f"it names warehouse {warehouse}; {sender.code} may report only its own work"
    if shipment_id and facts.warehouse.get(shipment_id) not in (None, sender.pk):
        return f"the shipment was shipped by another warehouse, not {sender.code}"
    orders = _orders_of(event, order_ids, shipment_id, facts)
    if orders is None:
        names_no_order = not event.references_of(ORDER_REFERENCE_KINDS)
        return None if event.kind == EventKind.SHIPMENT_MANIFESTED and names_no_order else DEFER
    for order_id in orders:
        named = facts.released_to[order_id]
        if named and sender.code not in named:
            return f"the order was released to {', '.join(sorted(named))}, not to {sender.code}"
    return None


def _carried(
    event: CanonicalEvent, sender: Partner, order_ids: list[int], shipment_id: int | None, facts: _Facts
) -> Outcome:
    carrier = event.attributes.get("carrier")
    if carrier and carrier != sender.code:
        return f"it names carrier {carrier}; {sender.code} may report only the shipments it carries"
    if not event.references_of(SHIPMENT_REFERENCE_KINDS):
        return "it names no shipment (shipment number, tracking, BOL, PRO, ASN or container)"
    if shipment_id is None:
        return DEFER
    named = facts.carriers[shipment_id]
    if sender.code not in named:
        holder = f"is carried by {', '.join(sorted(named))}" if named else "names no carrier yet"
        return f"the shipment {holder}; {sender.code} may report only the shipments it carries"
    return None


def _own_warehouse(
    event: CanonicalEvent, sender: Partner, order_ids: list[int], shipment_id: int | None, facts: _Facts
) -> Outcome:
    warehouse = event.attributes.get("warehouse")
    if warehouse and warehouse != sender.code:
        return f"it names warehouse {warehouse}; {sender.code} may report only its own stock"
    return None


def _orders_of(event: CanonicalEvent, order_ids: list[int], shipment_id: int | None, facts: _Facts) -> set[int] | None:
    """The orders an event is about: those its order references name, else its shipment's; None
    when it names an order we do not know yet, or names none and has no known shipment."""
    named = event.references_of(ORDER_REFERENCE_KINDS)
    if named:
        return set(order_ids) if order_ids else None
    if shipment_id:
        return facts.shipment_orders[shipment_id]
    return None


RULES = {
    Rule.OWN_ORDER: _own_order,
    Rule.RELEASED_TO: _released_to,
    Rule.CARRIED: _carried,
    Rule.OWN_WAREHOUSE: _own_warehouse,
}
