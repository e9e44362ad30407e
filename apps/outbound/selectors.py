"""Reads of the delivery log: subscriptions with their recent activity, one subscription's
deliveries, one delivery's attempts as sent and answered.

Every list is a constant number of queries whatever its length: counts are conditional
aggregates over one join, and what a row links to is selected with it. A subscription's
deliveries are read a page at a time by keyset (``controltower.keyset``), and counted only up to
``COUNT_LIMIT`` per status: a busy subscription's page costs what a quiet one's does.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Avg, Count, Max, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from apps.outbound.models import Delivery, DeliveryAttempt, Subscription
from controltower import keyset
from controltower.keyset import Key, KeysetPage, capped_counts, keyset_page

WINDOW = timedelta(hours=24)
# The signed headers first, in the order a receiver checks them; anything else follows by name.
PROMINENT_HEADERS = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Signature",
    "X-Timestamp",
    "Idempotency-Key",
    "X-Event-Kind",
    "X-Delivery-Id",
    "X-Delivery-Attempt",
    "Content-Type",
    "User-Agent",
)
UNSETTLED = (Delivery.Status.PENDING, Delivery.Status.SENDING)


# --- subscriptions --------------------------------------------------------------------------------


def subscription_activity(*, now: datetime) -> QuerySet[Subscription]:
    """Subscriptions with their partner, channel and endpoint, and what their deliveries did.

    ``delivered_recent``, ``dead_recent`` and the latencies cover the ``WINDOW`` before ``now``;
    ``pending_now`` and ``dead_total`` are the deliveries in those states whenever they were made.
    One query.
    """
    since = now - WINDOW
    delivered_recent = Q(deliveries__status=Delivery.Status.DELIVERED, deliveries__delivered_at__gte=since)
    return (
        Subscription.objects.select_related("partner", "channel", "endpoint")
        .annotate(
            delivered_recent=Count("deliveries", filter=delivered_recent),
            dead_recent=Count(
                "deliveries", filter=Q(deliveries__status=Delivery.Status.DEAD, deliveries__dead_at__gte=since)
            ),
            dead_total=Count("deliveries", filter=Q(deliveries__status=Delivery.Status.DEAD)),
            pending_now=Count("deliveries", filter=Q(deliveries__status__in=UNSETTLED)),
            last_delivered_at=Max("deliveries__delivered_at"),
            latency_avg_ms=Avg("deliveries__last_latency_ms", filter=delivered_recent),
            latency_max_ms=Max("deliveries__last_latency_ms", filter=delivered_recent),
        )
        .order_by("partner__code", "name", "pk")
    )


def subscription_with_counts() -> QuerySet[Subscription]:
    """Subscriptions with their partner, channel and endpoint, and their deliveries counted by
    status now (``count_pending``, ``count_sending``, ``count_delivered``, ``count_dead``)."""
    counts = {
        f"count_{status}": Count("deliveries", filter=Q(deliveries__status=status)) for status in Delivery.Status.values
    }
    return Subscription.objects.select_related("partner", "channel", "endpoint").annotate(**counts)


@dataclass(frozen=True)
class HourlyAttempts:
    labels: list[str]  # each hour's start, in the current time zone
    delivered: list[int]
    retried: list[int]
    dead: list[int]

    @property
    def total(self) -> int:
        return sum(self.delivered) + sum(self.retried) + sum(self.dead)


def attempts_by_hour(*, subscription_id: int, now: datetime) -> HourlyAttempts:
    """A subscription's attempts in each of the ``WINDOW``'s hours (the current one last), by
    outcome: when a receiver started failing shows at a glance. One query."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [current - timedelta(hours=back) for back in reversed(range(int(WINDOW / timedelta(hours=1))))]
    rows = (
        DeliveryAttempt.objects.filter(delivery__subscription_id=subscription_id, started_at__gte=hours[0])
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values("hour", "outcome")
        .annotate(count=Count("pk"))
    )
    counts = {(row["hour"], row["outcome"]): row["count"] for row in rows}
    zone = timezone.get_current_timezone()
    return HourlyAttempts(
        labels=[hour.astimezone(zone).strftime("%H:%M") for hour in hours],
        delivered=[counts.get((hour, "delivered"), 0) for hour in hours],
        retried=[counts.get((hour, "retry"), 0) for hour in hours],
        dead=[counts.get((hour, "dead"), 0) for hour in hours],
    )


# --- deliveries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """A count shown next to a list, read up to ``keyset.COUNT_LIMIT`` ("10,000+" beyond)."""

    count: int
    capped: bool = False

    def __str__(self) -> str:
        return f"{self.count:,}{'+' if self.capped else ''}"

    def __bool__(self) -> bool:
        return self.count > 0


def delivery_counts(*, subscription_id: int) -> dict[str, Tally]:
    """How many of a subscription's deliveries are in each status, now, each up to ``keyset.COUNT_LIMIT``
    (one query; each status read from the ``delivery_recent_by_status`` index)."""
    deliveries = Delivery.objects.filter(subscription_id=subscription_id)
    limit = keyset.COUNT_LIMIT
    counts = capped_counts({status: deliveries.filter(status=status) for status in Delivery.Status.values}, limit=limit)
    return {status: Tally(min(count, limit), count > limit) for status, count in counts.items()}


# Newest first, as keys for keyset pagination; read from delivery_recent (or, filtered by status,
# delivery_recent_by_status).
DELIVERY_ORDER = [Key("id", descending=True)]


def subscription_deliveries(*, subscription_id: int, status: str | None = None) -> QuerySet[Delivery]:
    """One subscription's deliveries, newest first, with their event (without its payload), order
    and the status of the earlier delivery that held them back."""
    deliveries = (
        Delivery.objects.filter(subscription_id=subscription_id)
        .select_related("event", "order", "held_by")
        .defer("event__payload", "held_by__last_error")
        .order_by("-id")
    )
    return deliveries.filter(status=status) if status else deliveries


def delivery_page(
    deliveries: QuerySet[Delivery], *, size: int, after: str | None = None, before: str | None = None
) -> KeysetPage:
    """One page of ``subscription_deliveries``, after (older than) or before (newer than) a cursor."""
    return keyset_page(deliveries, DELIVERY_ORDER, size=size, after=after, before=before)


@dataclass(frozen=True)
class DeliveryRow:
    delivery: Delivery
    waiting_for: int | None  # an earlier, still undelivered delivery of the same order holds it back
    note: str  # why it is not delivered (yet), when that is still true


def delivery_rows(deliveries: Sequence[Delivery]) -> list[DeliveryRow]:
    """Rows of the delivery log. A pending delivery of an ordered subscription says what it waits
    for while that earlier delivery is undelivered, and nothing once it was."""
    return [_row(delivery) for delivery in deliveries]


def _row(delivery: Delivery) -> DeliveryRow:
    if delivery.held_by_id is not None and delivery.status == Delivery.Status.PENDING:
        return DeliveryRow(delivery=delivery, waiting_for=waiting_for(delivery), note="")
    note = "" if delivery.status == Delivery.Status.DELIVERED else delivery.last_error
    return DeliveryRow(delivery=delivery, waiting_for=None, note=note)


def waiting_for(delivery: Delivery) -> int | None:
    """The earlier delivery of the same order that holds this pending one back, while it is
    undelivered (``held_by`` selected with the delivery)."""
    held_by = delivery.held_by if delivery.status == Delivery.Status.PENDING else None
    if held_by is None or held_by.status == Delivery.Status.DELIVERED:
        return None
    return held_by.pk


# --- one delivery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    text: str
    format: str  # json, x12 or text


@dataclass(frozen=True)
class AttemptView:
    attempt: DeliveryAttempt
    headers: list[tuple[str, str]]
    body: Body


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: Delivery
    attempts: list[AttemptView]
    content: Body  # what the delivery carries (the event as canonical JSON, or the 997)


def delivery_detail(pk: int) -> DeliveryDetail | None:
    """A delivery with its subscription, event, order and every attempt, oldest first."""
    delivery = (
        Delivery.objects.select_related("subscription__partner", "subscription__endpoint", "event", "order", "document")
        .filter(pk=pk)
        .first()
    )
    if delivery is None:
        return None
    attempts = [
        AttemptView(
            attempt=attempt,
            headers=ordered_headers(attempt.request_headers),
            body=readable_body(attempt.request_body, content_type=_content_type(attempt.request_headers)),
        )
        for attempt in DeliveryAttempt.objects.filter(delivery=delivery).order_by("number", "pk")
    ]
    return DeliveryDetail(delivery=delivery, attempts=attempts, content=_content(delivery))


def _content(delivery: Delivery) -> Body:
    if delivery.document_id:
        return readable_body(delivery.document.body, content_type="application/edi-x12")
    if delivery.event_id:
        return Body(json.dumps(delivery.event.payload, indent=2, sort_keys=True, ensure_ascii=False), "json")
    return Body("", "text")


def _content_type(headers: object) -> str:
    if not isinstance(headers, dict):
        return ""
    return next((str(value) for name, value in headers.items() if name.lower() == "content-type"), "")


def ordered_headers(headers: object) -> list[tuple[str, str]]:
    """Request headers as (name, value), the signed ones first."""
    if not isinstance(headers, dict):
        return []
    rank = {name.lower(): i for i, name in enumerate(PROMINENT_HEADERS)}
    items = [(str(name), str(value)) for name, value in headers.items()]
    return sorted(items, key=lambda item: (rank.get(item[0].lower(), len(rank)), item[0].lower()))


def readable_body(body: str, *, content_type: str = "") -> Body:
    """JSON indented; X12 one segment per line; anything else as it was sent."""
    if "json" in content_type or (not content_type and body.lstrip()[:1] in ("{", "[")):
        try:
            return Body(json.dumps(json.loads(body), indent=2, sort_keys=True, ensure_ascii=False), "json")
        except ValueError:
            return Body(body, "text")
    if "x12" in content_type or body.startswith("ISA"):
        return Body(x12_lines(body), "x12")
    return Body(body, "text")


def x12_lines(body: str) -> str:
    """One segment per line, the terminator kept (read from the ISA header, position 106)."""
    if not body.startswith("ISA") or len(body) < 106:
        return body
    terminator = body[105]
    if terminator.isalnum() or terminator in " \r\n":
        return body
    segments = [segment.strip("\r\n") for segment in body.split(terminator)]
    return "\n".join(f"{segment}{terminator}" for segment in segments if segment.strip())


# --- freshness ------------------------------------------------------------------------------------

FRESHNESS_SAMPLE = 1000


@dataclass(frozen=True)
class Freshness:
    """Commit-to-delivery time over a subscription's last ``count`` deliveries (at most
    ``FRESHNESS_SAMPLE``), in milliseconds."""

    count: int
    p50_ms: int
    p95_ms: int


def freshness(*, subscription_ids: Sequence[int]) -> dict[int, Freshness]:
    """p50 and p95 of each subscription's commit-to-delivery time, over its last
    ``FRESHNESS_SAMPLE`` deliveries, each read by index however long the log. On PostgreSQL one
    query for all the subscriptions (``/metrics`` asks for every active one); elsewhere one each.
    Subscriptions that delivered nothing yet are left out."""
    if connection.vendor == "postgresql":
        return _freshness_at_once(list(subscription_ids))
    found = {}
    for subscription_id in subscription_ids:
        sample = sorted(
            Delivery.objects.filter(
                subscription_id=subscription_id, status=Delivery.Status.DELIVERED, freshness_ms__isnull=False
            )
            .order_by("-id")
            .values_list("freshness_ms", flat=True)[:FRESHNESS_SAMPLE]
        )
        if sample:
            found[subscription_id] = Freshness(len(sample), _percentile(sample, 50), _percentile(sample, 95))
    return found


def _freshness_at_once(subscription_ids: list[int]) -> dict[int, Freshness]:
    """Each subscription's last deliveries (a lateral join: by index, per subscription) and their
    nearest-rank percentiles (``percentile_disc``), in one query."""
    if not subscription_ids:
        return {}
    table = connection.ops.quote_name(Delivery._meta.db_table)  # from the model; every value is a parameter
    sql = (
        "SELECT s.id, count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY f.freshness_ms), "  # noqa: S608
        "percentile_disc(0.95) WITHIN GROUP (ORDER BY f.freshness_ms) "
        "FROM unnest(%s::bigint[]) AS s(id) CROSS JOIN LATERAL ("
        f"SELECT d.freshness_ms FROM {table} AS d WHERE d.subscription_id = s.id AND d.status = %s "
        "AND d.freshness_ms IS NOT NULL ORDER BY d.id DESC LIMIT %s) AS f GROUP BY s.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [subscription_ids, Delivery.Status.DELIVERED, FRESHNESS_SAMPLE])
        return {pk: Freshness(count, p50, p95) for pk, count, p50, p95 in cursor.fetchall()}


def _percentile(ordered: list[int], percent: int) -> int:
    """The nearest-rank percentile of an ordered sample."""
    return ordered[max(math.ceil(len(ordered) * percent / 100) - 1, 0)]
