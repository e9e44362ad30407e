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
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache, partial, reduce
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet

from apps.billing.models import FreightCharge
from apps.dashboards import histogram
from apps.dashboards.models import Fact, Metric, PendingRefresh, Rollup
from apps.exceptions.models import ExceptionCase
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.timeline.bulk import row_sources
from apps.timeline.models import Order, OrderLine, Shipment, ShipmentLine
from apps.timeline.projections import shipments_of_orders
from apps.timeline.reactions import once_reactions_are_done

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

    An order brings its shipments and their freight charges along. A bounded number of
    statements whatever the number of subjects: one read per source table, one write per table.
    """
    with transaction.atomic():
        _lock()
        return _refresh(set(order_ids), set(message_ids), set(case_ids))


def _refresh(order_ids: set[int], message_ids: set[int], case_ids: set[int]) -> RefreshReport:
    """``kpis_refresh`` within a transaction that holds the writer's lock."""
    report = RefreshReport()
    subjects = _subjects(order_ids, message_ids, case_ids)
    new = {fact.key: fact for fact in _facts(subjects)}
    old, old_pks = _stored_facts(subjects)
    gone = [old[key] for key in old.keys() - new.keys()]
    changed = [(old.get(key), fact) for key, fact in new.items() if old.get(key) != fact]
    _delete_facts([old_pks[fact.key] for fact in gone])
    _upsert_facts([after for _, after in changed])
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


def _subjects(order_ids: set[int], message_ids: set[int], case_ids: set[int]) -> dict[str, set[int]]:
    shipment_ids = shipments_of_orders(order_ids)
    freight_ids = (
        set(FreightCharge.objects.filter(shipment_id__any=shipment_ids).order_by().values_list("id", flat=True))
        if shipment_ids
        else set()
    )
    return {
        "order": order_ids,
        "shipment": shipment_ids,
        "freight_charge": freight_ids,
        "message": message_ids,
        "case": case_ids,
    }


def kpis_refresh_later(
    *, order_ids: Iterable[int] = (), message_ids: Iterable[int] = (), case_ids: Iterable[int] = ()
) -> None:
    """Note these subjects for a refresh, and queue a drain for once the current transaction
    commits (at once outside one), or once the reactions of the unit of work or round under way
    are done: a round of a bulk load drains once, not once a message and once a detection.

    Requests made while a drain waits in the queue are refreshed by it together: under a
    backlog, an order touched by ten messages is refreshed once, not ten times. The drains
    queued after it find nothing left and cost a query.
    """
    wanted = (("order", order_ids), ("message", message_ids), ("case", case_ids))
    rows = [(kind, pk) for kind, ids in wanted for pk in ids]
    if rows:
        _insert_pending(rows)
        once_reactions_are_done(_queue_drain, stage="kpis")


def _insert_pending(rows: list[tuple[str, int]]) -> None:
    """Note the requests, one statement per chunk; a subject already waiting stays as it is."""
    table = connection.ops.quote_name(PendingRefresh._meta.db_table)
    with connection.cursor() as cursor:
        for source, params in row_sources(PendingRefresh, ("subject_type", "subject_id"), rows):
            # Identifiers and placeholders only: the values are parameters.
            cursor.execute(f"INSERT INTO {table} (subject_type, subject_id) {source} ON CONFLICT DO NOTHING", params)  # noqa: S608


def _queue_drain() -> None:
    from apps.dashboards.tasks import kpis_drain_task

    kpis_drain_task.apply_async(queue="bulk")


def kpis_refresh_pending(*, chunk: int = CHUNK) -> int:
    """Refresh every subject waiting for it, ``chunk`` at a time, each chunk in a transaction
    of its own. Returns how many subjects were refreshed.

    Rows are taken under the writer's lock, so two drains never refresh the same subjects. A
    chunk short of ``chunk`` is the last: a request committed since comes with a drain of its own.
    """
    refreshed = 0
    while True:
        with transaction.atomic():
            _lock()
            taken = _take_pending(chunk)
            ids: dict[str, set[int]] = defaultdict(set)
            for kind, subject_id in taken:
                ids[kind].add(subject_id)
            if taken:
                _refresh(ids["order"], ids["message"], ids["case"])
        refreshed += len(taken)
        if len(taken) < chunk:
            return refreshed


def _take_pending(chunk: int) -> list[tuple[str, int]]:
    """Delete the first ``chunk`` requests and return their subjects, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(take_pending_statement(), [chunk])
        return cursor.fetchall()


def take_pending_statement() -> str:
    """The first ``chunk`` requests are those up to the ``chunk``-th id, found once.

    ``id IN (SELECT id ... LIMIT %s)`` lets the planner run the subquery again for every row,
    which it does when the statistics were taken while the queue was empty, as they often are:
    seconds a drain where this takes milliseconds.
    """
    table = connection.ops.quote_name(PendingRefresh._meta.db_table)
    # The table's name only: the limit is a parameter.
    return (
        f"DELETE FROM {table} WHERE id <= (SELECT max(id) FROM (SELECT id FROM {table} ORDER BY id LIMIT %s) AS f) "  # noqa: S608
        "RETURNING subject_type, subject_id"
    )


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
        _insert_rollups(totals)
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


def _stored_facts(subjects: dict[str, set[int]]) -> tuple[dict[tuple, FactRow], dict[tuple, int]]:
    """The stored facts of these subjects by key, and their primary keys, in one query."""
    wanted = [Q(subject_type=subject_type, subject_id__any=ids) for subject_type, ids in subjects.items() if ids]
    if not wanted:
        return {}, {}
    facts, pks = {}, {}
    for pk, *values in Fact.objects.filter(reduce(operator.or_, wanted)).values_list("pk", *FactRow._fields):
        fact = FactRow(*values)
        facts[fact.key], pks[fact.key] = fact, pk
    return facts, pks


def _delete_facts(pks: list[int]) -> None:
    if pks:
        Fact.objects.filter(pk__any=pks).delete()


def _fact_models(facts: Iterable[FactRow]) -> Iterator[Fact]:
    for fact in facts:
        yield Fact(**fact._asdict())


BUCKET = ("metric", "day", "partner_id", "customer_id", "region", "detail")
ROLLUP_COLUMNS = (*BUCKET, "count", "hits", "seconds_sum", "histogram")
# The sum of two histograms of the same buckets, or the stored one when the delta adds nothing
# (as ``histogram.add``); ``r`` is the stored row, ``v.d_*`` the delta.
HISTOGRAM_SUM = {
    "postgresql": """CASE WHEN jsonb_array_length(v.d_histogram) = 0 THEN r.histogram
        WHEN jsonb_array_length(r.histogram) = 0 THEN v.d_histogram
        ELSE (SELECT jsonb_agg(a.n::bigint + b.n::bigint ORDER BY i)
            FROM jsonb_array_elements_text(r.histogram) WITH ORDINALITY a(n, i)
            JOIN jsonb_array_elements_text(v.d_histogram) WITH ORDINALITY b(n, i) USING (i)) END""",
    "sqlite": """CASE WHEN json_array_length(v.d_histogram) = 0 THEN r.histogram
        WHEN json_array_length(r.histogram) = 0 THEN v.d_histogram
        ELSE (SELECT json_group_array(n) FROM (SELECT a.value + b.value AS n
            FROM json_each(r.histogram) a JOIN json_each(v.d_histogram) b ON a.key = b.key
            ORDER BY a.key)) END""",
}


def _add_to_rollups(deltas: dict[tuple, Totals]) -> int:
    """Add each delta to its rollup row in one ``UPDATE``; create the rows that were missing,
    and delete the ones left counting nothing. A statement per table, whatever the deltas."""
    deltas = {bucket: delta for bucket, delta in deltas.items() if not delta.changes_nothing}
    if not deltas:
        return 0
    changed, emptied = len(deltas), []
    for pk, count, *bucket in _update_rollups(deltas):
        del deltas[tuple(bucket)]
        if count == 0:
            emptied.append(pk)
    Rollup.objects.filter(pk__any=emptied).delete()
    _insert_rollups(deltas)
    return changed


def _update_rollups(deltas: dict[tuple, Totals]) -> list[tuple]:
    """Add the deltas to the rollup rows that exist; returns their id, new count and bucket.

    Rows are matched through the unique index (no partner or customer is 0 there).
    """
    rows = [
        (*bucket, delta.count, delta.hits, delta.seconds_sum, delta.histogram if any(delta.histogram) else [])
        for bucket, delta in deltas.items()
    ]
    match = " AND ".join(
        f"COALESCE(r.{name}, 0) = COALESCE(v.d_{name}, 0)" if name.endswith("_id") else f"r.{name} = v.d_{name}"
        for name in BUCKET
    )
    updated: list[tuple] = []
    with connection.cursor() as cursor:
        for source, params in row_sources(Rollup, ROLLUP_COLUMNS, rows):
            cursor.execute(
                # Identifiers and placeholders only: the values are parameters.
                f"WITH v ({', '.join(f'd_{name}' for name in ROLLUP_COLUMNS)}) AS ({source}) "  # noqa: S608
                f"UPDATE {connection.ops.quote_name(Rollup._meta.db_table)} AS r SET count = r.count + v.d_count, "
                f"hits = r.hits + v.d_hits, seconds_sum = r.seconds_sum + v.d_seconds_sum, "
                f"histogram = {HISTOGRAM_SUM[connection.vendor]} "
                f"FROM v WHERE {match} RETURNING id, count, {', '.join(BUCKET)}",
                params,
            )
            updated += cursor.fetchall()
    return updated


def _upsert_facts(facts: list[FactRow]) -> None:
    """Insert the facts, or overwrite the stored ones of the same subject and metric."""
    names = FactRow._fields
    overwrite = ", ".join(f"{name} = EXCLUDED.{name}" for name in names[3:])
    with connection.cursor() as cursor:
        for source, params in row_sources(Fact, names, facts):
            cursor.execute(
                # Identifiers and placeholders only: the values are parameters.
                f"INSERT INTO {connection.ops.quote_name(Fact._meta.db_table)} ({', '.join(names)}) "  # noqa: S608
                f"{source} ON CONFLICT (metric, subject_type, subject_id) DO UPDATE SET {overwrite}",
                params,
            )


def _insert_rollups(totals: dict[tuple, Totals]) -> None:
    """New rollup rows, one ``INSERT ... SELECT`` per chunk (the refresh holds the lock: no
    other writer can have created them meanwhile)."""
    rows = [(*bucket, total.count, total.hits, total.seconds_sum, total.histogram) for bucket, total in totals.items()]
    table = connection.ops.quote_name(Rollup._meta.db_table)
    with connection.cursor() as cursor:
        for source, params in row_sources(Rollup, ROLLUP_COLUMNS, rows):
            # Identifiers and placeholders only: the values are parameters.
            cursor.execute(f"INSERT INTO {table} ({', '.join(ROLLUP_COLUMNS)}) {source}", params)  # noqa: S608


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
    links = Shipment.orders.through.objects.filter(order_id__each=order_ids).values_list(
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
    for order_id, sku, quantity in (
        OrderLine.objects.filter(order_id__any=order_ids).order_by().values_list("order_id", "sku", "quantity")
    ):
        ordered[order_id][sku] += quantity
    shipped: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for order_id, sku, quantity in (
        ShipmentLine.objects.filter(order_id__any=ordered).order_by().values_list("order_id", "sku", "quantity")
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
    orders = (
        Order.objects.filter(id__any=order_ids)
        .order_by()
        .values(
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
        Shipment.orders.through.objects.filter(shipment_id__any=shipment_ids)
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
    for s in (
        Shipment.objects.filter(id__any=shipment_ids)
        .order_by()
        .values("id", "carrier_id", "manifested_at", "picked_up_at", "delivered_at")
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
        FreightCharge.objects.filter(id__any=freight_ids, posted_at__isnull=False, settled_at__isnull=False)
        .order_by()
        .values("id", "shipment_id", "carrier_id", "posted_at", "settled_at")
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
    for inbound_id, status in (
        OutboundMessage.objects.filter(inbound_id__any=message_ids, kind="997")
        .order_by()
        .values_list("inbound_id", "ack_status")
    ):
        acks[inbound_id].append(status)
    messages = (
        InboundMessage.objects.filter(id__any=message_ids, status__in=FINAL_MESSAGE_STATUSES)
        .order_by()
        .values(
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
    cases = (
        ExceptionCase.objects.filter(id__any=case_ids, resolved_at__isnull=False)
        .order_by()
        .values("id", "order_id", "partner_id", "customer_id", "region", "queue", "opened_at", "due_at", "resolved_at")
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
