"""KPI facts and their rollups, kept up to date incrementally.

Each subject (order, shipment, freight charge, inbound message, case) contributes at most one
fact per metric. ``kpis_refresh`` recomputes the facts of the subjects it is given and adds the
difference to the rollups (each old fact subtracted, each new one added), so its cost follows the
change, not the history, and dashboards read rollups only. ``rollups_rebuild`` starts over from
the facts; the tests hold both to the same result.

One writer at a time: a refresh takes a transaction-level lock before it reads anything, so it
always sees what earlier refreshes committed, and two refreshes of the same day never race.
"""

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache, partial
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet

from apps.billing.models import FreightCharge
from apps.dashboards import histogram
from apps.dashboards.models import Fact, Metric, Rollup
from apps.exceptions.models import ExceptionCase
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.timeline.models import Order, OrderLine, Shipment, ShipmentLine

M = Metric
LOCK_ID = 0x4B5049  # any constant; names the KPI writer's advisory lock
DURATIONS = frozenset(
    {
        M.ORDER_TO_SHIP,
        M.PICK_TIME,
        M.SHIP_TIME,
        M.TRANSIT_TIME,
        M.DELIVERY_TO_INVOICE,
        M.FREIGHT_SETTLEMENT,
        M.SOURCE_LAG,
        M.APPLY_LAG,
        M.RESOLUTION_TIME,
    }
)
FINAL_MESSAGE_STATUSES = (
    InboundMessage.Status.PROCESSED,
    InboundMessage.Status.PARTIALLY_PROCESSED,
    InboundMessage.Status.DEAD,
    InboundMessage.Status.FAILED,
)
ACCEPTED_ACKS = ("accepted", "accepted_with_errors")
CHUNK = 2000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FactRow(NamedTuple):
    metric: str
    subject_type: str
    subject_id: int
    order_id: int | None
    day: date
    partner_id: int | None
    customer_id: int | None
    region: str
    detail: str
    count: int
    hits: int
    seconds: float | None

    @property
    def key(self) -> tuple[str, str, int]:
        return self.metric, self.subject_type, self.subject_id

    @property
    def bucket(self) -> tuple:
        return self.metric, self.day, self.partner_id, self.customer_id, self.region, self.detail


@dataclass
class Totals:
    """What a rollup row holds: the sums of its facts."""

    count: int = 0
    hits: int = 0
    seconds_sum: float = 0.0
    histogram: list[int] = field(default_factory=list)

    def add(self, fact: FactRow, sign: int = 1) -> None:
        self.count += sign * fact.count
        self.hits += sign * fact.hits
        if fact.seconds is not None:
            self.seconds_sum += sign * fact.seconds
            if not self.histogram:
                self.histogram = histogram.empty()
            self.histogram[histogram.bucket_of(fact.seconds)] += sign

    def matches(self, other: "Totals | None") -> bool:
        """The same, up to the rounding of adding and subtracting fractional seconds."""
        return (
            other is not None
            and (self.count, self.hits) == (other.count, other.hits)
            and list(self.histogram or histogram.empty()) == list(other.histogram or histogram.empty())
            and math.isclose(self.seconds_sum, other.seconds_sum, rel_tol=1e-9, abs_tol=1e-6)
        )

    @property
    def empty(self) -> bool:
        """Nothing counted (every fact counts for at least one)."""
        return self.count == 0

    @property
    def changes_nothing(self) -> bool:
        return self.empty and self.hits == 0 and self.seconds_sum == 0 and not any(self.histogram)


@dataclass
class RefreshReport:
    facts_written: int = 0
    facts_deleted: int = 0
    rollups_changed: int = 0


# --- the writer -------------------------------------------------------------------------------


def kpis_refresh(
    *, order_ids: Iterable[int] = (), message_ids: Iterable[int] = (), case_ids: Iterable[int] = ()
) -> RefreshReport:
    """Bring the facts of these subjects, and the rollups they feed, up to date.

    An order brings its shipments and their freight charges along.
    """
    order_ids, message_ids, case_ids = set(order_ids), set(message_ids), set(case_ids)
    report = RefreshReport()
    with transaction.atomic():
        _lock()
        shipment_ids = set(
            Shipment.orders.through.objects.filter(order_id__in=order_ids).values_list("shipment_id", flat=True)
        )
        freight_ids = set(FreightCharge.objects.filter(shipment_id__in=shipment_ids).values_list("id", flat=True))
        subjects = {
            "order": order_ids,
            "shipment": shipment_ids,
            "freight_charge": freight_ids,
            "message": message_ids,
            "case": case_ids,
        }
        new = {fact.key: fact for fact in _facts(subjects)}
        old = {fact.key: fact for fact in _stored_facts(subjects)}
        gone = [old[key] for key in old.keys() - new.keys()]
        changed = [(old.get(key), fact) for key, fact in new.items() if old.get(key) != fact]
        _write_facts(gone, [after for _, after in changed])
        deltas: dict[tuple, Totals] = defaultdict(Totals)
        for fact in gone:
            deltas[fact.bucket].add(fact, -1)
        for before, after in changed:
            if before:
                deltas[before.bucket].add(before, -1)
            deltas[after.bucket].add(after)
        report.rollups_changed = _add_to_rollups(deltas)
        report.facts_written, report.facts_deleted = len(changed), len(gone)
        if report.rollups_changed:
            transaction.on_commit(_broadcast)
    return report


def kpis_refresh_later(
    *, order_ids: Iterable[int] = (), message_ids: Iterable[int] = (), case_ids: Iterable[int] = ()
) -> None:
    """Queue a refresh for once the current transaction commits (at once outside one)."""
    from apps.dashboards.tasks import kpis_refresh_task

    kwargs = {"order_ids": sorted(order_ids), "message_ids": sorted(message_ids), "case_ids": sorted(case_ids)}
    if any(kwargs.values()):
        transaction.on_commit(lambda: kpis_refresh_task.apply_async(kwargs=kwargs, queue="bulk"))


def rollups_rebuild(*, progress: Callable[[int], None] | None = None) -> int:
    """Recompute every fact and every rollup from the timeline, messages and cases.

    For after a change of definitions, or to repair by hand. Returns the number of rollup rows.
    """
    with transaction.atomic():
        _lock()
        Fact.objects.all().delete()
        Rollup.objects.all().delete()
        totals: dict[tuple, Totals] = defaultdict(Totals)
        for subjects in _all_subjects():
            facts = _facts(subjects)
            Fact.objects.bulk_create(_fact_models(facts), batch_size=CHUNK)
            _add_up(facts, totals)
            if progress:
                progress(sum(len(ids) for ids in subjects.values()))
        totals = _without_empty(totals)
        Rollup.objects.bulk_create(_rollup_models(totals), batch_size=CHUNK)
        transaction.on_commit(_broadcast)
    return len(totals)


def rollups_recomputed() -> dict[tuple, Totals]:
    """What the rollups would be if computed from scratch now; writes nothing."""
    totals: dict[tuple, Totals] = defaultdict(Totals)
    for subjects in _all_subjects():
        _add_up(_facts(subjects), totals)
    return _without_empty(totals)


def rollups_differing() -> list[tuple]:
    """The rollup rows that differ from a recomputation from scratch (none, unless something is wrong)."""
    stored, expected = rollups_stored(), rollups_recomputed()
    return sorted(
        (key for key in stored.keys() | expected.keys() if not expected.get(key, Totals()).matches(stored.get(key))),
        key=str,
    )


def rollups_stored() -> dict[tuple, Totals]:
    return {
        (r.metric, r.day, r.partner_id, r.customer_id, r.region, r.detail): Totals(
            r.count, r.hits, r.seconds_sum, r.histogram
        )
        for r in Rollup.objects.all()
    }


def subjects_count() -> int:
    """How many subjects a rebuild goes through (for its progress bar)."""
    return sum(queryset.count() for queryset in _subject_querysets().values())


def _add_up(facts: Iterable[FactRow], totals: dict[tuple, Totals]) -> None:
    for fact in facts:
        totals[fact.bucket].add(fact)


def _without_empty(totals: dict[tuple, Totals]) -> dict[tuple, Totals]:
    return {bucket: total for bucket, total in totals.items() if not total.empty}


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_ID])


def _broadcast() -> None:
    from apps.dashboards.realtime import broadcast_kpis_changed

    broadcast_kpis_changed()


def _subject_querysets() -> dict[str, QuerySet]:
    return {
        "order": Order.objects.all(),
        "shipment": Shipment.objects.all(),
        "freight_charge": FreightCharge.objects.all(),
        "message": InboundMessage.objects.filter(status__in=FINAL_MESSAGE_STATUSES),
        "case": ExceptionCase.objects.filter(resolved_at__isnull=False),
    }


def _all_subjects() -> Iterator[dict[str, set[int]]]:
    for subject_type, queryset in _subject_querysets().items():
        ids: list[int] = []
        for pk in queryset.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=CHUNK):
            ids.append(pk)
            if len(ids) == CHUNK:
                yield {subject_type: set(ids)}
                ids = []
        if ids:
            yield {subject_type: set(ids)}


# --- storing facts and rollups ----------------------------------------------------------------


def _stored_facts(subjects: dict[str, set[int]]) -> list[FactRow]:
    rows: list[FactRow] = []
    for subject_type, ids in subjects.items():
        if ids:
            rows += _fact_rows(Fact.objects.filter(subject_type=subject_type, subject_id__in=ids))
    return rows


def _fact_rows(queryset: QuerySet[Fact]) -> Iterator[FactRow]:
    fields = (
        "metric",
        "subject_type",
        "subject_id",
        "order_id",
        "day",
        "partner_id",
        "customer_id",
        "region",
        "detail",
        "count",
        "hits",
        "seconds",
    )
    for values in queryset.values_list(*fields).iterator(chunk_size=CHUNK):
        yield FactRow(*values)


def _write_facts(remove: list[FactRow], upsert: list[FactRow]) -> None:
    """Delete the facts that are gone; insert or overwrite the changed ones in one statement."""
    _delete_facts(remove)
    Fact.objects.bulk_create(
        _fact_models(upsert),
        batch_size=CHUNK,
        update_conflicts=True,
        unique_fields=["metric", "subject_type", "subject_id"],
        update_fields=[name for name in FactRow._fields if name not in ("metric", "subject_type", "subject_id")],
    )


def _delete_facts(remove: list[FactRow]) -> None:
    by_type: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for fact in remove:
        by_type[fact.subject_type].add((fact.metric, fact.subject_id))
    for subject_type, pairs in by_type.items():
        metrics = {metric for metric, _ in pairs}
        ids = {subject_id for _, subject_id in pairs}
        stale = Fact.objects.filter(subject_type=subject_type, metric__in=metrics, subject_id__in=ids)
        stale_ids = [
            pk
            for pk, metric, subject_id in stale.values_list("pk", "metric", "subject_id")
            if (metric, subject_id) in pairs
        ]
        Fact.objects.filter(pk__in=stale_ids).delete()


def _fact_models(facts: Iterable[FactRow]) -> Iterator[Fact]:
    for fact in facts:
        yield Fact(**fact._asdict())


def _add_to_rollups(deltas: dict[tuple, Totals]) -> int:
    deltas = {bucket: delta for bucket, delta in deltas.items() if not delta.changes_nothing}
    if not deltas:
        return 0
    metric, day, partner, customer, region, detail = (set(values) for values in zip(*deltas, strict=True))
    candidates = Rollup.objects.filter(
        _among("partner_id", partner),
        _among("customer_id", customer),
        metric__in=metric,
        day__in=day,
        region__in=region,
        detail__in=detail,
    )
    stored = {(r.metric, r.day, r.partner_id, r.customer_id, r.region, r.detail): r for r in candidates}
    to_update, to_create, to_delete = [], [], []
    for bucket, delta in deltas.items():
        row = stored.get(bucket)
        if row is None:
            to_create.append(bucket)
            continue
        total = Totals(row.count, row.hits, row.seconds_sum, row.histogram)
        total.count += delta.count
        total.hits += delta.hits
        total.seconds_sum += delta.seconds_sum
        total.histogram = histogram.add(total.histogram, delta.histogram)
        if total.empty:
            to_delete.append(row.pk)
            continue
        row.count, row.hits, row.seconds_sum, row.histogram = (
            total.count,
            total.hits,
            total.seconds_sum,
            total.histogram,
        )
        to_update.append(row)
    Rollup.objects.filter(pk__in=to_delete).delete()
    Rollup.objects.bulk_update(to_update, ["count", "hits", "seconds_sum", "histogram"], batch_size=CHUNK)
    Rollup.objects.bulk_create(_rollup_models({bucket: deltas[bucket] for bucket in to_create}), batch_size=CHUNK)
    return len(deltas)


def _among(name: str, values: set[int | None]) -> Q:
    """``name`` is one of ``values``, None included: the rows a refresh may change, not every
    rollup of the same days."""
    among = Q(**{f"{name}__in": values - {None}})
    return among | Q(**{f"{name}__isnull": True}) if None in values else among


def _rollup_models(totals: dict[tuple, Totals]) -> list[Rollup]:
    return [
        Rollup(
            metric=metric,
            day=day,
            partner_id=partner_id,
            customer_id=customer_id,
            region=region,
            detail=detail,
            count=total.count,
            hits=total.hits,
            seconds_sum=total.seconds_sum,
            histogram=total.histogram,
        )
        for (metric, day, partner_id, customer_id, region, detail), total in totals.items()
    ]


# --- computing facts --------------------------------------------------------------------------


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def kpi_day(moment: datetime) -> date:
    """The calendar day a moment counts for, in the KPI time zone."""
    return moment.astimezone(_zone(settings.KPI_TIME_ZONE)).date()


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def _facts(subjects: dict[str, set[int]]) -> list[FactRow]:
    return [
        *_order_facts(subjects.get("order", set())),
        *_shipment_facts(subjects.get("shipment", set())),
        *_freight_facts(subjects.get("freight_charge", set())),
        *_message_facts(subjects.get("message", set())),
        *_case_facts(subjects.get("case", set())),
    ]


class _ShipmentInfo(NamedTuple):
    id: int
    carrier_id: int | None
    warehouse_id: int | None
    manifested_at: datetime | None
    picked_up_at: datetime | None
    delivered_at: datetime | None


def _shipments_of_orders(order_ids: set[int]) -> dict[int, list[_ShipmentInfo]]:
    links = Shipment.orders.through.objects.filter(order_id__in=order_ids).values_list(
        "order_id",
        "shipment_id",
        "shipment__carrier_id",
        "shipment__warehouse_id",
        "shipment__manifested_at",
        "shipment__picked_up_at",
        "shipment__delivered_at",
    )
    by_order: dict[int, list[_ShipmentInfo]] = defaultdict(list)
    for order_id, *shipment in links:
        by_order[order_id].append(_ShipmentInfo(*shipment))
    return by_order


def _in_full(order_ids: set[int]) -> dict[int, bool]:
    """Per order with lines: was every ordered quantity shipped?"""
    ordered: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for order_id, sku, quantity in OrderLine.objects.filter(order_id__in=order_ids).values_list(
        "order_id", "sku", "quantity"
    ):
        ordered[order_id][sku] += quantity
    shipped: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for order_id, sku, quantity in ShipmentLine.objects.filter(order_id__in=ordered).values_list(
        "order_id", "sku", "quantity"
    ):
        shipped[order_id][sku] += quantity
    return {
        order_id: all(shipped[order_id][sku] >= quantity for sku, quantity in lines.items())
        for order_id, lines in ordered.items()
    }


def _first(shipments: list[_ShipmentInfo], attr: str) -> int | None:
    """The partner of the first shipment out (by manifest time, then id) that names one."""
    ranked = sorted(shipments, key=lambda s: (s.manifested_at is None, s.manifested_at or EPOCH, s.id))
    return next((getattr(s, attr) for s in ranked if getattr(s, attr)), None)


def _last_delivering_carrier(shipments: list[_ShipmentInfo]) -> int | None:
    delivered = [s for s in shipments if s.delivered_at and s.carrier_id]
    return max(delivered, key=lambda s: (s.delivered_at, s.id)).carrier_id if delivered else None


def _order_facts(order_ids: set[int]) -> list[FactRow]:
    if not order_ids:
        return []
    orders = Order.objects.filter(id__in=order_ids).values(
        "id",
        "customer_id",
        "region",
        "promised_at",
        "ordered_at",
        "released_at",
        "picked_at",
        "shipped_at",
        "delivered_at",
        "invoiced_at",
        "cancelled_at",
    )
    shipments = _shipments_of_orders(order_ids)
    in_full = _in_full(order_ids)
    facts = []
    for o in orders:
        warehouse = _first(shipments[o["id"]], "warehouse_id")
        carrier = _last_delivering_carrier(shipments[o["id"]])
        fact = partial(_order_fact, o)
        released, picked, shipped = o["released_at"], o["picked_at"], o["shipped_at"]
        delivered, invoiced, promised = o["delivered_at"], o["invoiced_at"], o["promised_at"]
        if released and shipped:
            facts.append(fact(M.ORDER_TO_SHIP, shipped, warehouse, seconds=_seconds(released, shipped)))
        if released and picked:
            facts.append(fact(M.PICK_TIME, picked, warehouse, seconds=_seconds(released, picked)))
        if picked and shipped:
            facts.append(fact(M.SHIP_TIME, shipped, warehouse, seconds=_seconds(picked, shipped)))
        if delivered and invoiced:
            facts.append(fact(M.DELIVERY_TO_INVOICE, invoiced, None, seconds=_seconds(delivered, invoiced)))
        if not delivered:
            continue
        complete = all(o[name] for name in ("ordered_at", "released_at", "picked_at", "shipped_at"))
        facts.append(fact(M.COMPLETE_TIMELINE, delivered, None, hits=int(complete)))
        on_time = promised is not None and delivered <= promised
        full = in_full.get(o["id"])
        if promised:
            facts.append(fact(M.ON_TIME, delivered, carrier, hits=int(on_time)))
        if full is not None:
            facts.append(fact(M.IN_FULL, delivered, carrier, hits=int(full)))
        if promised and full is not None:
            facts.append(fact(M.OTIF, delivered, carrier, hits=int(on_time and full)))
    return facts


def _order_fact(
    order: dict, metric: str, at: datetime, partner_id: int | None, *, hits: int = 0, seconds: float | None = None
) -> FactRow:
    return FactRow(
        metric,
        "order",
        order["id"],
        order["id"],
        kpi_day(at),
        partner_id,
        order["customer_id"],
        order["region"],
        "",
        1,
        hits,
        seconds,
    )


def _first_orders(shipment_ids: set[int]) -> dict[int, tuple[int, int | None, str]]:
    """Per shipment, its first order (lowest id): the order, customer and region it reports under."""
    first: dict[int, tuple[int, int | None, str]] = {}
    links = (
        Shipment.orders.through.objects.filter(shipment_id__in=shipment_ids)
        .order_by("shipment_id", "order_id")
        .values_list("shipment_id", "order_id", "order__customer_id", "order__region")
    )
    for shipment_id, order_id, customer_id, region in links:
        first.setdefault(shipment_id, (order_id, customer_id, region))
    return first


def _shipment_facts(shipment_ids: set[int]) -> list[FactRow]:
    if not shipment_ids:
        return []
    orders = _first_orders(shipment_ids)
    facts = []
    for s in Shipment.objects.filter(id__in=shipment_ids).values(
        "id", "carrier_id", "manifested_at", "picked_up_at", "delivered_at"
    ):
        start = s["picked_up_at"] or s["manifested_at"]
        if not (start and s["delivered_at"]) or s["id"] not in orders:
            continue
        order_id, customer_id, region = orders[s["id"]]
        facts.append(
            FactRow(
                M.TRANSIT_TIME,
                "shipment",
                s["id"],
                order_id,
                kpi_day(s["delivered_at"]),
                s["carrier_id"],
                customer_id,
                region,
                "",
                1,
                0,
                _seconds(start, s["delivered_at"]),
            )
        )
    return facts


def _freight_facts(freight_ids: set[int]) -> list[FactRow]:
    if not freight_ids:
        return []
    charges = list(
        FreightCharge.objects.filter(id__in=freight_ids, posted_at__isnull=False, settled_at__isnull=False).values(
            "id", "shipment_id", "carrier_id", "posted_at", "settled_at"
        )
    )
    orders = _first_orders({c["shipment_id"] for c in charges})
    facts = []
    for c in charges:
        if c["shipment_id"] not in orders:
            continue  # like its shipment, a charge counts once the shipment is linked to an order
        order_id, customer_id, region = orders[c["shipment_id"]]
        facts.append(
            FactRow(
                M.FREIGHT_SETTLEMENT,
                "freight_charge",
                c["id"],
                order_id,
                kpi_day(c["settled_at"]),
                c["carrier_id"],
                customer_id,
                region,
                "",
                1,
                0,
                _seconds(c["posted_at"], c["settled_at"]),
            )
        )
    return facts


def _message_facts(message_ids: set[int]) -> list[FactRow]:
    if not message_ids:
        return []
    acks: dict[int, list[str]] = defaultdict(list)
    for inbound_id, status in OutboundMessage.objects.filter(inbound_id__in=message_ids, kind="997").values_list(
        "inbound_id", "ack_status"
    ):
        acks[inbound_id].append(status)
    messages = InboundMessage.objects.filter(id__in=message_ids, status__in=FINAL_MESSAGE_STATUSES).values(
        "id",
        "partner_id",
        "format",
        "status",
        "received_at",
        "processed_at",
        "source_time",
        "events_count",
        "duplicate_count",
        "unmapped_count",
    )
    facts = []
    for m in messages:
        fact = partial(_message_fact, m)
        failed = m["status"] in (InboundMessage.Status.DEAD, InboundMessage.Status.FAILED)
        facts.append(fact(M.FAILED_MESSAGES, hits=int(failed)))
        if not failed and m["processed_at"]:
            facts.append(fact(M.APPLY_LAG, seconds=_seconds(m["received_at"], m["processed_at"])))
        if m["source_time"]:
            facts.append(fact(M.SOURCE_LAG, seconds=_seconds(m["source_time"], m["received_at"])))
        if m["events_count"]:
            facts.append(fact(M.DUPLICATE_EVENTS, count=m["events_count"], hits=m["duplicate_count"]))
            facts.append(fact(M.UNMAPPED_STATUSES, count=m["events_count"], hits=m["unmapped_count"]))
        if acks[m["id"]]:
            accepted = sum(status in ACCEPTED_ACKS for status in acks[m["id"]])
            facts.append(fact(M.ACKNOWLEDGED, count=len(acks[m["id"]]), hits=accepted))
    return facts


def _message_fact(
    message: dict, metric: str, *, count: int = 1, hits: int = 0, seconds: float | None = None
) -> FactRow:
    day = kpi_day(message["received_at"])
    return FactRow(
        metric,
        "message",
        message["id"],
        None,
        day,
        message["partner_id"],
        None,
        "",
        message["format"],
        count,
        hits,
        seconds,
    )


def _case_facts(case_ids: set[int]) -> list[FactRow]:
    if not case_ids:
        return []
    cases = ExceptionCase.objects.filter(id__in=case_ids, resolved_at__isnull=False).values(
        "id", "order_id", "partner_id", "customer_id", "region", "queue", "opened_at", "due_at", "resolved_at"
    )
    return [
        FactRow(
            M.RESOLUTION_TIME,
            "case",
            c["id"],
            c["order_id"],
            kpi_day(c["resolved_at"]),
            c["partner_id"],
            c["customer_id"],
            c["region"],
            c["queue"],
            1,
            int(c["resolved_at"] <= c["due_at"]),
            _seconds(c["opened_at"], c["resolved_at"]),
        )
        for c in cases
    ]
