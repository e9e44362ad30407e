import ipaddress
import math
import os
import uuid
from datetime import date, timedelta

import pytest
import redis
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from apps.dashboards import histogram
from apps.dashboards.models import Rollup
from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.ingest.models import InboundMessage
from tests.factories import InboundMessageFactory, ParkedEventFactory, PartnerFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("apps.dashboards.tests.metrics_urls")]

Status = InboundMessage.Status


def scrape(client, **headers) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The scraped samples: {sample name: {sorted label pairs: value}}."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by(samples: dict[tuple[tuple[str, str], ...], float], *names: str) -> dict[tuple[str, ...], float]:
    """Samples keyed by the values of the given labels, in that order."""
    return {tuple(dict(labels)[name] for name in names): value for labels, value in samples.items()}


@pytest.fixture(autouse=True)
def scraper_on_loopback(settings):
    """Scrapes come from the test client's address, allowed here as an internal scraper's would be."""
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.fixture
def no_broker(settings):
    settings.CELERY_BROKER_URL = "memory://"


@pytest.fixture
def messages(db):
    acme = PartnerFactory(code="ACME")
    upsn = PartnerFactory(code="UPSN")
    InboundMessageFactory.create_batch(2, partner=acme, format="json", status=Status.PROCESSED)
    InboundMessageFactory(partner=acme, format="x12", status=Status.DEAD)
    InboundMessageFactory(partner=acme, format="x12", status=Status.FAILED)
    InboundMessageFactory(partner=upsn, format="json", status=Status.RECEIVED)
    InboundMessageFactory(partner=upsn, format="json", status=Status.PROCESSED)
    InboundMessageFactory(partner=None, format="csv", status=Status.DEAD)
    InboundMessageFactory(partner=None, format="csv", status=Status.RECEIVED)


def case(queue: str, severity: str, status: str = ExceptionCase.Status.OPEN) -> ExceptionCase:
    rule, _ = ExceptionRule.objects.get_or_create(code=f"rule-{queue}", defaults={"title": queue, "queue": queue})
    now = timezone.now()
    return ExceptionCase.objects.create(
        rule=rule,
        queue=queue,
        severity=severity,
        status=status,
        subject_type="order",
        subject_id=ExceptionCase.objects.count() + 1,
        summary=f"A {severity} case in {queue}",
        opened_at=now,
        due_at=now + timedelta(days=1),
    )


def apply_lag(day: int, durations: list[float]) -> Rollup:
    return Rollup.objects.create(
        metric="apply_lag",
        day=date(2026, 11, day),
        count=len(durations),
        seconds_sum=sum(durations),
        histogram=histogram.of(durations),
    )


def test_messages_are_counted_by_partner_format_and_status(client, messages):
    samples = scrape(client)

    counted = by(samples["controltower_inbound_messages"], "partner", "format", "status")
    assert counted == {
        ("ACME", "json", "processed"): 2,
        ("ACME", "x12", "dead"): 1,
        ("ACME", "x12", "failed"): 1,
        ("UPSN", "json", "received"): 1,
        ("UPSN", "json", "processed"): 1,
        ("", "csv", "dead"): 1,
        ("", "csv", "received"): 1,
    }


def test_dead_letters_are_counted_per_partner_with_zeros_for_healthy_partners(client, messages):
    samples = scrape(client)

    assert by(samples["controltower_dead_letters"], "partner") == {("ACME",): 2, ("UPSN",): 0, ("",): 1}


def test_messages_waiting_to_be_processed_are_the_first_queue(client, messages, no_broker):
    samples = scrape(client)

    assert by(samples["controltower_queue_depth"], "queue") == {("awaiting_processing",): 2}
    assert "controltower_broker_up" not in samples  # no Redis broker to ask


def test_processing_latency_is_a_cumulative_histogram_over_all_days(client):
    apply_lag(1, [0.5, 0.7, 45, 10**8])
    apply_lag(2, [50, 55, 59])
    Rollup.objects.create(metric="apply_lag", day=date(2026, 11, 3), histogram=[])  # a day without messages
    Rollup.objects.create(metric="source_lag", day=date(2026, 11, 1), count=9, seconds_sum=9, histogram=[9])

    samples = scrape(client)

    buckets = {
        float(le): value for (le,), value in by(samples["controltower_message_processing_seconds_bucket"], "le").items()
    }
    assert list(buckets) == [*histogram.BUCKETS, math.inf]
    assert buckets[1] == 2
    assert buckets[30] == 2
    assert buckets[60] == 6
    assert buckets[30 * 86400] == 6
    assert buckets[math.inf] == 7
    assert list(buckets.values()) == sorted(buckets.values())
    assert samples["controltower_message_processing_seconds_count"][()] == 7
    assert samples["controltower_message_processing_seconds_sum"][()] == pytest.approx(0.5 + 0.7 + 45 + 1e8 + 164)


def test_no_rollups_give_an_empty_histogram(client):
    samples = scrape(client)

    assert set(samples["controltower_message_processing_seconds_bucket"].values()) == {0}
    assert samples["controltower_message_processing_seconds_count"][()] == 0
    assert samples["controltower_message_processing_seconds_sum"][()] == 0


def test_open_cases_are_counted_by_queue_and_severity(client):
    case("finance", "high")
    case("finance", "high")
    case("finance", "high", status=ExceptionCase.Status.ACKNOWLEDGED)
    case("finance", "high", status=ExceptionCase.Status.RESOLVED)
    case("finance", "low", status=ExceptionCase.Status.DISMISSED)
    case("customer_service", "critical")

    samples = scrape(client)

    open_cases = by(samples["controltower_open_cases"], "queue", "severity")
    assert open_cases[("finance", "high")] == 3
    assert open_cases[("customer_service", "critical")] == 1
    assert open_cases[("finance", "low")] == 0
    assert len(open_cases) == 16  # every queue and severity, so an alert can compare with zero
    assert sum(open_cases.values()) == 4


def test_parked_events_are_counted(client):
    ParkedEventFactory.create_batch(3)

    assert scrape(client)["controltower_parked_events"][()] == 3


def test_the_scrape_takes_the_same_few_queries_however_much_data(client, django_assert_max_num_queries, no_broker):
    InboundMessageFactory(status=Status.DEAD)
    case("finance", "high")
    apply_lag(1, [3])
    # Four, and one for the outbound subscriptions (none here; see apps/outbound/metrics.py).
    with django_assert_max_num_queries(5):
        scrape(client)

    for n in range(12):
        partner = PartnerFactory()
        InboundMessageFactory.create_batch(2, partner=partner, format="x12" if n % 2 else "json")
        InboundMessageFactory(partner=partner, status=Status.FAILED)
        case("supply_chain" if n % 2 else "integration", "medium")
        apply_lag(n + 2, [n, n * 60])
    ParkedEventFactory.create_batch(3)
    with django_assert_max_num_queries(5):
        samples = scrape(client)
    assert len(samples["controltower_dead_letters"]) == 13


def test_the_response_is_prometheus_text_and_never_cached(client):
    response = client.get("/metrics")

    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    assert "no-cache" in response["Cache-Control"]


def test_only_get_is_allowed(client):
    assert client.post("/metrics").status_code == 405


def test_with_no_token_and_no_allowed_address_metrics_are_not_served(client, settings):
    settings.METRICS_ALLOWED_IPS = []

    response = client.get("/metrics")

    assert response.status_code == 404
    assert b"controltower_" not in response.content


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer", "s3cret-token", "Basic czNjcmV0LXRva2Vu"])
def test_a_configured_token_is_required(client, settings, authorization):
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_ALLOWED_IPS = []
    headers = {"Authorization": authorization} if authorization else {}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"controltower_" not in response.content


def test_the_right_token_gets_the_metrics(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_ALLOWED_IPS = []

    samples = scrape(client, Authorization="Bearer s3cret-token")

    assert "controltower_parked_events" in samples


def test_an_unreachable_broker_is_reported_down_and_its_queues_left_out(client, settings, messages):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    samples = scrape(client)

    assert samples["controltower_broker_up"][()] == 0
    assert by(samples["controltower_queue_depth"], "queue") == {("awaiting_processing",): 2}


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
def test_tasks_waiting_in_each_celery_queue_are_read_from_redis(client, settings):
    url = os.environ["REDIS_URL"]
    settings.CELERY_BROKER_URL = url
    broker = redis.Redis.from_url(url)
    before = broker.llen("bulk")
    markers = [f"metrics-test-{uuid.uuid4().hex}" for _ in range(3)]
    broker.rpush("bulk", *markers)
    try:
        samples = scrape(client)
    finally:
        for marker in markers:
            broker.lrem("bulk", 0, marker)
        broker.close()

    assert samples["controltower_broker_up"][()] == 1
    depth = by(samples["controltower_queue_depth"], "queue")
    assert depth[("bulk",)] == before + 3
    assert {("critical",), ("default",), ("awaiting_processing",)} <= set(depth)
