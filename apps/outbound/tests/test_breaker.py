"""The circuit breaker's decisions and the retry delays, at their edges: when a probe is presumed
lost, how long an open breaker waits, and how far a receiver's Retry-After can push a retry."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.outbound.models import Endpoint
from apps.outbound.services import backoff, breaker_admit, breaker_failed, breaker_succeeded
from tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _policy(settings):
    settings.OUTBOUND_RETRY_BASE_SECONDS = 10
    settings.OUTBOUND_RETRY_MAX_SECONDS = 600
    settings.OUTBOUND_BREAKER_THRESHOLD = 3
    settings.OUTBOUND_BREAKER_COOLDOWN_SECONDS = 60
    settings.OUTBOUND_CLAIM_GRACE_SECONDS = 30


def _probing(now, started_ago: timedelta | None, *, trips: int = 1, timeouts: tuple[int, ...] = ()) -> Endpoint:
    endpoint = Endpoint.objects.create(
        key="https://receiver.example.com:443",
        state=Endpoint.State.HALF_OPEN,
        trips=trips,
        probe_started_at=None if started_ago is None else now - started_ago,
    )
    for seconds in timeouts:
        SubscriptionFactory(endpoint=endpoint, timeout_seconds=seconds)
    return endpoint


def test_while_a_probe_may_still_answer_no_second_delivery_goes():
    now = timezone.now()
    endpoint = _probing(now, timedelta(seconds=49), trips=2, timeouts=(5, 20))

    admission = breaker_admit(endpoint=endpoint, now=now)

    assert not admission.admitted
    assert admission.retry_at == now + timedelta(seconds=120), "held for the cooldown of the second trip"
    endpoint.refresh_from_db()
    assert endpoint.probe_started_at < now - timedelta(seconds=48), "the probe in flight is kept"


def test_a_probe_silent_past_the_longest_timeout_and_the_grace_is_replaced_by_a_new_one():
    now = timezone.now()
    endpoint = _probing(now, timedelta(seconds=51), timeouts=(5, 20))

    admission = breaker_admit(endpoint=endpoint, now=now)

    assert admission.admitted
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.probe_started_at) == (Endpoint.State.HALF_OPEN, now)


def test_the_probe_is_presumed_lost_exactly_after_the_longest_timeout_plus_the_grace():
    now = timezone.now()
    exactly = _probing(now, timedelta(seconds=50), timeouts=(20,))
    assert not breaker_admit(endpoint=exactly, now=now).admitted
    assert breaker_admit(endpoint=exactly, now=now + timedelta(microseconds=1)).admitted


def test_without_subscriptions_a_probe_gets_the_default_timeout():
    now = timezone.now()
    assert not breaker_admit(endpoint=_probing(now, timedelta(seconds=40)), now=now).admitted
    Endpoint.objects.all().delete()
    assert breaker_admit(endpoint=_probing(now, timedelta(seconds=41)), now=now).admitted


def test_a_half_open_breaker_without_a_probe_start_lets_one_through():
    now = timezone.now()
    assert breaker_admit(endpoint=_probing(now, None), now=now).admitted


def test_an_open_breaker_holds_until_its_retry_time_then_lets_a_probe_through():
    now = timezone.now()
    endpoint = Endpoint.objects.create(key="https://r.example.com:443", state=Endpoint.State.OPEN, retry_at=now)

    held = breaker_admit(endpoint=endpoint, now=now - timedelta(seconds=1))
    assert (held.admitted, held.retry_at) == (False, now)
    assert breaker_admit(endpoint=endpoint, now=now).admitted
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.probe_started_at) == (Endpoint.State.HALF_OPEN, now)


def test_a_breaker_another_sender_closed_since_the_delivery_was_read_lets_it_through_at_once():
    now = timezone.now()
    endpoint = Endpoint.objects.create(
        key="https://r.example.com:443", state=Endpoint.State.OPEN, trips=1, retry_at=now + timedelta(seconds=60)
    )
    breaker_succeeded(endpoint=Endpoint.objects.get(pk=endpoint.pk), now=now)  # another sender's probe answered

    admission = breaker_admit(endpoint=endpoint, now=now)  # as read with the delivery: still open

    assert admission.admitted
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.probe_started_at) == (Endpoint.State.CLOSED, None), "no probe: it is closed"


def test_the_breaker_opens_at_the_threshold_and_each_failed_probe_doubles_the_wait_up_to_the_cap():
    now = timezone.now()
    endpoint = Endpoint.objects.create(key="https://r.example.com:443")

    for _ in range(2):
        breaker_failed(endpoint_id=endpoint.pk, now=now, error="HTTP 500")
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.failures, endpoint.retry_at) == (Endpoint.State.CLOSED, 2, None)

    breaker_failed(endpoint_id=endpoint.pk, now=now, error="HTTP 503")
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.trips, endpoint.opened_at) == (Endpoint.State.OPEN, 1, now)
    assert (endpoint.retry_at, endpoint.last_error) == (now + timedelta(seconds=60), "HTTP 503")

    waits = []
    for _ in range(5):
        Endpoint.objects.filter(pk=endpoint.pk).update(state=Endpoint.State.HALF_OPEN, probe_started_at=now)
        breaker_failed(endpoint_id=endpoint.pk, now=now, error="x" * 3000)
        endpoint.refresh_from_db()
        waits.append((endpoint.retry_at - now).total_seconds())
        assert (endpoint.state, endpoint.probe_started_at) == (Endpoint.State.OPEN, None)
    assert waits == [120, 240, 480, 600, 600]
    assert len(endpoint.last_error) == 2000


def test_an_open_breaker_counts_a_late_failure_without_pushing_its_retry_back():
    now = timezone.now()
    retry_at = now + timedelta(seconds=30)
    endpoint = Endpoint.objects.create(
        key="https://r.example.com:443", state=Endpoint.State.OPEN, trips=1, failures=3, retry_at=retry_at
    )

    breaker_failed(endpoint_id=endpoint.pk, now=now + timedelta(seconds=5), error="timed out")

    endpoint.refresh_from_db()
    assert (endpoint.failures, endpoint.trips, endpoint.retry_at) == (4, 1, retry_at)


def test_a_retry_after_beyond_the_longest_wait_is_capped_and_a_short_one_does_not_hurry_a_retry():
    assert backoff(1, retry_after=10_000).total_seconds() == 600
    assert backoff(10, retry_after=1).total_seconds() >= 300
