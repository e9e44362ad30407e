"""Reading the KPIs: every figure on the SLA dashboard comes from the rollups, in one query.

The rows of a period (a few thousand at most: days × partners × customers × regions) are read
once and added up in Python into tiles, trends and partner comparisons. Drill-downs read the
facts behind a figure, a page at a time.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, F, Q, QuerySet

from apps.dashboards import histogram
from apps.dashboards.health import NONE, dead_letters
from apps.dashboards.models import Fact, Metric, Rollup
from apps.dashboards.services import DURATIONS
from apps.exceptions.models import ExceptionCase, Queue
from apps.ingest.models import InboundMessage
from apps.partners.models import Channel, Partner
from controltower.keyset import Key, KeysetPage, keyset_page

M = Metric
GRAINS = ("day", "week")
AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("< 4 h", timedelta(hours=4)),
    ("4–24 h", timedelta(days=1)),
    ("1–3 d", timedelta(days=3)),
    ("3–7 d", timedelta(days=7)),
    ("> 7 d", None),
)


@dataclass(frozen=True)
class KpiFilter:
    """Which facts a figure covers: a period of whole days (both ends included) and dimensions."""

    start: date
    end: date
    grain: str = "day"
    partner_id: int | None = None
    customer_id: int | None = None
    region: str = ""

    def rollups(self) -> QuerySet[Rollup]:
        return _dimensions(Rollup.objects.filter(day__gte=self.start, day__lte=self.end), self)

    def facts(self, metric: str) -> QuerySet[Fact]:
        return _dimensions(Fact.objects.filter(metric=metric, day__gte=self.start, day__lte=self.end), self)

    def periods(self) -> list[date]:
        """The first day of every period (day or ISO week) the range covers."""
        first = period_of(self.start, self.grain)
        step = timedelta(days=7 if self.grain == "week" else 1)
        return [first + step * n for n in range((self.end - first) // step + 1)]


def _dimensions(queryset: QuerySet, kpi_filter: KpiFilter) -> QuerySet:
    if kpi_filter.partner_id:
        queryset = queryset.filter(partner_id=kpi_filter.partner_id)
    if kpi_filter.customer_id:
        queryset = queryset.filter(customer_id=kpi_filter.customer_id)
    if kpi_filter.region:
        queryset = queryset.filter(region=kpi_filter.region)
    return queryset


def period_of(day: date, grain: str) -> date:
    return day - timedelta(days=day.weekday()) if grain == "week" else day


@dataclass
class KpiValue:
    """A metric over some facts: a rate (hits of count) and, for durations, a mean and percentiles."""

    metric: str
    count: int = 0
    hits: int = 0
    seconds_sum: float = 0.0
    histogram: list[int] = field(default_factory=list)

    def add(self, count: int, hits: int, seconds_sum: float, counts: Sequence[int] = ()) -> None:
        """Add a rollup row's sums (in place: a period may hold tens of thousands of rows)."""
        self.count += count
        self.hits += hits
        self.seconds_sum += seconds_sum
        if counts:
            if not self.histogram:
                self.histogram = histogram.empty()
            for index, number in enumerate(counts):
                if number:
                    self.histogram[index] += number

    @property
    def is_duration(self) -> bool:
        return self.metric in DURATIONS

    @property
    def rate(self) -> float | None:
        return self.hits / self.count if self.count else None

    @property
    def mean(self) -> float | None:
        return self.seconds_sum / self.count if self.count and self.is_duration else None

    @property
    def p50(self) -> float | None:
        return histogram.percentile(self.histogram, 0.5)

    @property
    def p95(self) -> float | None:
        return histogram.percentile(self.histogram, 0.95)

    @property
    def headline(self) -> float | None:
        """The one number a tile shows: the mean of a duration, the rate of anything else."""
        return self.mean if self.is_duration else self.rate


@dataclass
class Board:
    """Everything the SLA dashboard shows for one filter."""

    kpi_filter: KpiFilter
    tiles: dict[str, KpiValue]
    trends: dict[str, list[tuple[date, KpiValue]]]
    by_partner: dict[str, list[tuple[Partner, KpiValue]]]


def kpi_board(kpi_filter: KpiFilter, partners: dict[int, Partner]) -> Board:
    """The tiles, trend series and per-partner figures of every metric, from one read of the rollups."""
    tiles: dict[str, KpiValue] = {metric: KpiValue(metric) for metric in M.values}
    trends: dict[str, dict[date, KpiValue]] = defaultdict(dict)
    per_partner: dict[str, dict[int, KpiValue]] = defaultdict(dict)
    rows = kpi_filter.rollups().values_list("metric", "day", "partner_id", "count", "hits", "seconds_sum", "histogram")
    for metric, day, partner_id, count, hits, seconds_sum, counts in rows:
        tiles[metric].add(count, hits, seconds_sum, counts)
        period = period_of(day, kpi_filter.grain)
        trends[metric].setdefault(period, KpiValue(metric)).add(count, hits, seconds_sum)  # no percentiles
        if partner_id:
            per_partner[metric].setdefault(partner_id, KpiValue(metric)).add(count, hits, seconds_sum, counts)
    periods = kpi_filter.periods()
    return Board(
        kpi_filter=kpi_filter,
        tiles=tiles,
        trends={
            metric: [(period, trends[metric].get(period, KpiValue(metric))) for period in periods]
            for metric in M.values
        },
        by_partner={
            metric: sorted(
                ((partners[pk], value) for pk, value in values.items() if pk in partners),
                key=lambda pair: pair[0].code,
            )
            for metric, values in per_partner.items()
        },
    )


@dataclass
class QueueAgeing:
    queue: str
    label: str
    buckets: list[int]
    open: int
    overdue: int


def case_ageing(kpi_filter: KpiFilter, now: datetime) -> list[QueueAgeing]:
    """Open cases per queue by age, as they stand now (the period does not apply; dimensions do)."""
    cases = _dimensions(ExceptionCase.objects.filter(status__in=ExceptionCase.OPEN_STATUSES), kpi_filter)
    counts = {f"age{index}": Count("id", filter=_age_filter(index, now)) for index in range(len(AGE_BUCKETS))}
    rows = {
        row["queue"]: row
        for row in cases.values("queue").annotate(
            open=Count("id"), overdue=Count("id", filter=Q(due_at__lt=now)), **counts
        )
    }
    return [
        QueueAgeing(
            queue=queue,
            label=label,
            buckets=[rows.get(queue, {}).get(f"age{index}", 0) for index in range(len(AGE_BUCKETS))],
            open=rows.get(queue, {}).get("open", 0),
            overdue=rows.get(queue, {}).get("overdue", 0),
        )
        for queue, label in Queue.choices
    ]


def _age_filter(index: int, now: datetime) -> Q:
    upper = AGE_BUCKETS[index][1]
    lower = AGE_BUCKETS[index - 1][1] if index else None
    condition = Q()
    if upper is not None:
        condition &= Q(opened_at__gt=now - upper)
    if lower is not None:
        condition &= Q(opened_at__lte=now - lower)
    return condition


def drilldown(kpi_filter: KpiFilter, metric: str, *, day: date | None = None, missed: bool = False) -> QuerySet[Fact]:
    """The facts behind a figure, slowest or missed first, with their orders and partners."""
    facts = kpi_filter.facts(metric)
    if day:
        last = day + timedelta(days=6 if kpi_filter.grain == "week" else 0)
        facts = facts.filter(day__gte=day, day__lte=last)
    if missed:
        facts = facts.filter(hits__lt=F("count"))
    ordering = ["-seconds", "-day", "-id"] if metric in DURATIONS else ["hits", "-day", "-id"]
    return facts.select_related("order", "partner", "customer").order_by(*ordering)


def partners_by_id() -> dict[int, Partner]:
    return {partner.id: partner for partner in Partner.objects.all()}


# --- dead letters ------------------------------------------------------------------------------

# Newest first, as keys for keyset pagination; read from the dead_letter_* indexes of InboundMessage.
DEAD_LETTER_ORDER = [Key("received_at", descending=True), Key("id", descending=True)]


def dead_letter_list(*, partner: str = "", channel: str = "") -> QuerySet[InboundMessage]:
    """``health.dead_letters``, filtered so that one index serves the page, newest first: a
    partner's code is looked up first (its messages are then read from the partner's index rather
    than joined), and a channel of that partner needs no partner filter beside its own."""
    if not partner or partner == NONE:
        return dead_letters(partner=partner, channel=channel)
    if channel and channel != NONE:
        known = Channel.objects.filter(pk=int(channel), partner__code=partner).exists()
        return dead_letters(channel=channel) if known else InboundMessage.objects.none()
    partner_id = Partner.objects.filter(code=partner).values_list("pk", flat=True).first()
    if partner_id is None:
        return InboundMessage.objects.none()
    return dead_letters(channel=channel).filter(partner_id=partner_id)


def dead_letter_page(
    messages: QuerySet[InboundMessage], *, size: int, after: str | None = None, before: str | None = None
) -> KeysetPage:
    """One page of ``dead_letter_list``, after (older than) or before (newer than) a cursor."""
    return keyset_page(messages, DEAD_LETTER_ORDER, size=size, after=after, before=before)
