"""Prometheus metrics at ``/metrics``, read from the database (and the broker) on every scrape.

A scrape costs four queries whatever the data: messages grouped by partner, format and status
(which also give the dead letters and the backlog), the processing-latency rollups, open cases
grouped by queue and severity, and the parked-event count. Collectors other apps list in
``METRICS_COLLECTORS`` add their own (each says what it costs).
"""

import hmac
import ipaddress
from collections import Counter
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from apps.dashboards import histogram
from apps.dashboards.models import Metric as Kpi
from apps.dashboards.models import Rollup
from apps.exceptions.models import ExceptionCase, Queue, Severity
from apps.ingest.models import InboundMessage
from apps.timeline.models import ParkedEvent
from controltower.celery import app as celery_app

BROKER_TIMEOUT_SECONDS = 0.5
DEAD_STATUSES = (InboundMessage.Status.DEAD, InboundMessage.Status.FAILED)

MessageCounts = dict[tuple[str, str, str], int]
"""Messages by (partner code, format, status)."""


class ControlTowerCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        messages = _message_counts()
        yield _inbound_messages(messages)
        yield _dead_letters(messages)
        yield _processing_seconds()
        yield from _queue_depth(messages)
        yield _open_cases()
        yield _parked_events()


REGISTRY = CollectorRegistry()
REGISTRY.register(ControlTowerCollector())
for path in settings.METRICS_COLLECTORS:
    REGISTRY.register(import_string(path)())


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The scrape, for the bearer of ``METRICS_TOKEN`` or a peer in ``METRICS_ALLOWED_IPS``.

    Anyone else gets 401 when a token is configured and 404 when none is, so that /metrics is
    never public by default.
    """
    if _has_token(request) or _from_allowed_address(request):
        return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
    if not settings.METRICS_TOKEN:
        raise Http404
    response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = "Bearer"
    return response


def _has_token(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _from_allowed_address(request: HttpRequest) -> bool:
    """The connecting peer (``REMOTE_ADDR``, never a forwarded header) is in the allow-list."""
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in network for network in settings.METRICS_ALLOWED_IPS)


def _message_counts() -> MessageCounts:
    rows = (
        InboundMessage.objects.order_by().values_list("partner__code", "format", "status").annotate(total=Count("id"))
    )
    return {(partner or "", fmt, status): total for partner, fmt, status, total in rows}


def _inbound_messages(messages: MessageCounts) -> GaugeMetricFamily:
    """A gauge: a message moves from one status to another, so each series can go down."""
    family = GaugeMetricFamily(
        "controltower_inbound_messages",
        "Inbound messages stored, by sending partner, format and current status.",
        labels=["partner", "format", "status"],
    )
    for (partner, fmt, status), total in sorted(messages.items()):
        family.add_metric([partner, fmt, status], total)
    return family


def _dead_letters(messages: MessageCounts) -> GaugeMetricFamily:
    """Dead letters per partner, with a zero for every partner that sent anything."""
    dead: Counter[str] = Counter()
    for (partner, _, status), total in messages.items():
        dead[partner] += total if status in DEAD_STATUSES else 0
    family = GaugeMetricFamily(
        "controltower_dead_letters",
        "Messages that failed for good (dead or retries exhausted), waiting for a replay.",
        labels=["partner"],
    )
    for partner, total in sorted(dead.items()):
        family.add_metric([partner], total)
    return family


def _processing_seconds() -> HistogramMetricFamily:
    """Received-to-applied latency of every message, from the daily rollups summed over all days."""
    counts, total, seconds = histogram.empty(), 0, 0.0
    rows = Rollup.objects.filter(metric=Kpi.APPLY_LAG).order_by().values_list("histogram", "count", "seconds_sum")
    for row_histogram, row_count, row_seconds in rows:
        counts = histogram.add(counts, row_histogram)
        total += row_count
        seconds += row_seconds
    return HistogramMetricFamily(
        "controltower_message_processing_seconds",
        "Time from receiving a message to applying its events.",
        buckets=_cumulative(counts, total),
        sum_value=seconds,
    )


def _cumulative(counts: list[int], total: int) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus' cumulative ``le`` buckets; ``+Inf`` is the total count."""
    buckets = []
    running = 0
    for bound, count in zip(histogram.BUCKETS, counts, strict=False):
        running += count
        buckets.append((floatToGoString(bound), running))
    buckets.append(("+Inf", total))
    return buckets


def _queue_depth(messages: MessageCounts) -> Iterator[GaugeMetricFamily]:
    """Messages stored but not processed yet and, with a Redis broker, the tasks waiting per queue."""
    depth = GaugeMetricFamily(
        "controltower_queue_depth",
        "Work waiting: messages received but not processed, and tasks queued in each Celery queue.",
        labels=["queue"],
    )
    awaiting = sum(total for (_, _, status), total in messages.items() if status == InboundMessage.Status.RECEIVED)
    depth.add_metric(["awaiting_processing"], awaiting)
    broker_url = settings.CELERY_BROKER_URL
    if not broker_url.startswith(("redis://", "rediss://")):
        yield depth
        return
    lengths = _broker_queue_lengths(broker_url)
    for queue, length in (lengths or {}).items():
        depth.add_metric([queue], length)
    yield depth
    yield GaugeMetricFamily(
        "controltower_broker_up",
        "1 when the Celery broker answered this scrape, else 0.",
        value=int(lengths is not None),
    )


def _broker_queue_lengths(url: str) -> dict[str, int] | None:
    """The length of each Celery queue's Redis list, or None when Redis does not answer in time."""
    names = [queue.name for queue in celery_app.conf.task_queues]
    client = redis.Redis.from_url(
        url, socket_timeout=BROKER_TIMEOUT_SECONDS, socket_connect_timeout=BROKER_TIMEOUT_SECONDS
    )
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            lengths = pipe.execute()
    except redis.RedisError:
        return None
    finally:
        client.close()
    return dict(zip(names, lengths, strict=True))


def _open_cases() -> GaugeMetricFamily:
    """Open and acknowledged cases for every queue and severity, zeros included, so alerts see 0."""
    counts = dict.fromkeys(((queue, severity) for queue in Queue.values for severity in Severity.values), 0)
    rows = (
        ExceptionCase.objects.filter(status__in=ExceptionCase.OPEN_STATUSES)
        .order_by()
        .values_list("queue", "severity")
        .annotate(total=Count("id"))
    )
    counts.update({(queue, severity): total for queue, severity, total in rows})
    family = GaugeMetricFamily(
        "controltower_open_cases", "Exception cases open or acknowledged.", labels=["queue", "severity"]
    )
    for (queue, severity), total in sorted(counts.items()):
        family.add_metric([queue, severity], total)
    return family


def _parked_events() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "controltower_parked_events",
        "Events whose references match no order or shipment yet.",
        value=ParkedEvent.objects.count(),
    )
