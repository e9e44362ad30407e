"""Carrier tracking pull against a real HTTP server on 127.0.0.1 (see fake_carrier)."""

import ipaddress
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.core.exceptions import ValidationError

from apps.ingest import polling
from apps.ingest.models import InboundMessage
from apps.ingest.polling import (
    BREAKER_OPEN,
    OUT_OF_TIME,
    RATE_LIMITED,
    PollConfigError,
    PollReport,
    poll_all_carriers,
    poll_carrier_channel,
    poll_config,
)
from apps.partners import network
from apps.partners.models import Channel, Partner
from apps.timeline.events import parse_events
from apps.timeline.models import Shipment
from apps.timeline.services import apply_events

from .fake_carrier import FakeCarrier, Reply

pytestmark = pytest.mark.django_db

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Breakers, windows and cursors are keyed by channel id, which the database may reuse."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fake_carrier(trust_loopback) -> Iterator[FakeCarrier]:
    server = FakeCarrier().start()
    yield server
    server.stop()


@pytest.fixture
def channel(carrier: Partner, fake_carrier: FakeCarrier) -> Channel:
    return Channel.objects.create(
        partner=carrier, code="track", format=Channel.Format.POLL, mapping_overrides=_config()
    )


def _config(**overrides: Any) -> dict[str, Any]:
    return {"url": "http://127.0.0.1:9/track/{tracking}", "adapter": "json", "timeout_seconds": 0.5, **overrides}


def _configure(channel: Channel, fake_carrier: FakeCarrier, **overrides: Any) -> None:
    channel.mapping_overrides = _config(url=fake_carrier.url, **overrides)
    channel.save()


def _event(kind: str, tracking: str, occurred_at: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{tracking}-{kind}",
        "kind": kind,
        "occurred_at": occurred_at,
        "references": [{"kind": "tracking", "value": tracking}],
        **fields,
    }


def _manifest(*trackings: str, carrier: str = "UPSN") -> None:
    events = [
        {
            **_event("shipment.manifested", tracking, "2026-11-20T08:00:00+00:00"),
            "references": [{"kind": "shipment", "value": f"SH-{tracking}"}, {"kind": "tracking", "value": tracking}],
            "attributes": {"carrier": carrier},
        }
        for tracking in trackings
    ]
    apply_events(parse_events(events))


def _poll(channel: Channel, capture) -> PollReport:
    """Poll and run what the pipeline queued on commit (eager Celery in tests), end to end."""
    with capture(execute=True):
        return poll_carrier_channel(channel)


def _server_error(delay: float = 0.0) -> Reply:
    return Reply(500, b'{"error": "internal"}', delay)


def _status(tracking: str) -> str:
    return Shipment.objects.get(tracking_number=tracking).status


def test_answers_are_stored_as_poll_messages_and_move_the_shipment(
    channel, fake_carrier, django_capture_on_commit_callbacks
):
    _configure(channel, fake_carrier)
    _manifest("1Z001")
    fake_carrier.events("1Z001", _event("shipment.in_transit", "1Z001", "2026-11-21T10:00:00+00:00"))

    report = _poll(channel, django_capture_on_commit_callbacks)

    assert (report.polled, report.stored, report.failed, report.error) == (1, 1, [], "")
    message = InboundMessage.objects.get()
    assert (message.source, message.format, message.filename, message.channel) == ("poll", "json", "1Z001", channel)
    assert (message.partner, message.status, message.applied_count) == (channel.partner, "processed", 1)
    assert _status("1Z001") == "in_transit"

    fake_carrier.events(
        "1Z001",
        _event("shipment.in_transit", "1Z001", "2026-11-21T10:00:00+00:00"),
        _event("shipment.delivered", "1Z001", "2026-11-22T15:30:00+00:00"),
    )
    assert _poll(channel, django_capture_on_commit_callbacks).stored == 1
    shipment = Shipment.objects.get(tracking_number="1Z001")
    assert (shipment.status, shipment.delivered_at) == ("delivered", datetime(2026, 11, 22, 15, 30, tzinfo=UTC))


def test_an_unchanged_tracker_is_a_duplicate_and_creates_nothing(
    channel, fake_carrier, django_capture_on_commit_callbacks
):
    _configure(channel, fake_carrier)
    _manifest("1Z001")
    fake_carrier.events("1Z001", _event("shipment.in_transit", "1Z001", "2026-11-21T10:00:00+00:00"))
    _poll(channel, django_capture_on_commit_callbacks)

    report = _poll(channel, django_capture_on_commit_callbacks)

    assert (report.polled, report.stored, report.unchanged) == (1, 0, 1)
    assert InboundMessage.objects.count() == 1


def test_only_open_shipments_of_the_channels_carrier_with_tracking_are_polled(
    channel, fake_carrier, django_capture_on_commit_callbacks
):
    Partner.objects.create(code="FDX", name="FedEx", kind=Partner.Kind.CARRIER)
    _configure(channel, fake_carrier)
    _manifest("1Z001", "1Z002")
    _manifest("FX001", carrier="FDX")
    apply_events(parse_events([_event("shipment.delivered", "1Z002", "2026-11-21T10:00:00+00:00")]))
    apply_events(
        parse_events(
            {
                **_event("shipment.manifested", "", "2026-11-20T08:00:00+00:00"),
                "event_id": "untracked",
                "references": [{"kind": "shipment", "value": "SH-UNTRACKED"}],
                "attributes": {"carrier": "UPSN"},
            }
        )
    )

    report = _poll(channel, django_capture_on_commit_callbacks)

    assert fake_carrier.tracking_asked == ["1Z001"]
    assert (report.polled, report.failed[0].reason) == (1, "unknown tracking number (HTTP 404)")


def test_the_oldest_carrier_news_goes_first_and_runs_rotate_through_every_shipment(channel, fake_carrier):
    _configure(channel, fake_carrier, batch=2)
    _manifest("1Z001", "1Z002", "1Z003")
    apply_events(parse_events([_event("shipment.in_transit", "1Z001", "2026-11-21T10:00:00+00:00")]))

    poll_carrier_channel(channel)
    poll_carrier_channel(channel)

    assert fake_carrier.tracking_asked == ["1Z002", "1Z003", "1Z001", "1Z002"]


def test_the_configured_method_headers_and_body_are_sent(channel, fake_carrier):
    _configure(channel, fake_carrier, method="POST", body='{"tracking_number": "{tracking}"}')
    channel.poll_headers = {"Authorization": "Bearer carrier-key"}
    channel.save()
    _manifest("1Z 001")

    poll_carrier_channel(channel)

    (seen,) = fake_carrier.seen
    assert (seen.method, seen.tracking, seen.body) == ("POST", "1Z001", b'{"tracking_number": "1Z001"}')
    assert seen.headers["Authorization"] == "Bearer carrier-key"


def test_the_rate_limit_caps_calls_per_minute_across_runs(channel, fake_carrier):
    _configure(channel, fake_carrier, rate_per_minute=3)
    _manifest("1Z001", "1Z002", "1Z003", "1Z004", "1Z005")

    with time_machine.travel(MONDAY, tick=False) as clock:
        first = poll_carrier_channel(channel)
        clock.shift(30)
        second = poll_carrier_channel(channel)
        clock.shift(31)
        third = poll_carrier_channel(channel)

    assert (first.polled, first.skipped) == (3, {RATE_LIMITED: 2})
    assert (second.polled, second.skipped) == (0, {RATE_LIMITED: 5})
    assert (third.polled, third.skipped) == (3, {RATE_LIMITED: 2})
    assert len(fake_carrier.seen) == 6


def test_the_breaker_opens_after_consecutive_failures_and_skips_calls_while_open(channel, fake_carrier, caplog):
    _configure(channel, fake_carrier, breaker={"failures": 2, "open_seconds": 300})
    _manifest("1Z001", "1Z002", "1Z003", "1Z004")
    fake_carrier.outage = _server_error()

    with time_machine.travel(MONDAY, tick=False) as clock, caplog.at_level(logging.INFO, "apps.ingest.polling"):
        first = poll_carrier_channel(channel)
        clock.shift(299)
        second = poll_carrier_channel(channel)

    assert (first.polled, first.skipped, first.breaker) == (2, {BREAKER_OPEN: 2}, "open")
    assert [f.reason for f in first.failed] == ["HTTP 500", "HTTP 500"]
    assert (second.polled, second.skipped, second.breaker) == (0, {BREAKER_OPEN: 4}, "open")
    assert len(fake_carrier.seen) == 2
    assert "circuit breaker closed → open: 2 consecutive failures, the last: HTTP 500" in caplog.text


def test_after_the_open_time_one_probe_that_succeeds_closes_the_breaker(channel, fake_carrier, caplog):
    _configure(channel, fake_carrier, breaker={"failures": 1, "open_seconds": 60})
    _manifest("1Z001", "1Z002", "1Z003")
    fake_carrier.outage = _server_error()

    with time_machine.travel(MONDAY, tick=False) as clock, caplog.at_level(logging.INFO, "apps.ingest.polling"):
        assert poll_carrier_channel(channel).breaker == "open"
        fake_carrier.outage = None
        clock.shift(61)
        report = poll_carrier_channel(channel)

    assert (report.polled, report.skipped, report.breaker) == (3, {}, "closed")
    assert "open → half_open" in caplog.text
    assert "half_open → closed: the probe succeeded" in caplog.text


def test_a_failed_probe_reopens_the_breaker_for_another_open_time(channel, fake_carrier):
    _configure(channel, fake_carrier, breaker={"failures": 1, "open_seconds": 60})
    _manifest("1Z001", "1Z002", "1Z003")
    fake_carrier.outage = _server_error()

    with time_machine.travel(MONDAY, tick=False) as clock:
        poll_carrier_channel(channel)
        clock.shift(61)
        probe = poll_carrier_channel(channel)
        clock.shift(59)
        waiting = poll_carrier_channel(channel)

    assert (probe.polled, probe.skipped, probe.breaker) == (1, {BREAKER_OPEN: 2}, "open")
    assert (waiting.polled, waiting.breaker) == (0, "open")
    assert len(fake_carrier.seen) == 2


def test_unknown_tracking_numbers_are_failures_of_the_shipment_not_of_the_endpoint(channel, fake_carrier):
    _configure(channel, fake_carrier, breaker={"failures": 2, "open_seconds": 300})
    _manifest("1Z001", "1Z002", "1Z003")

    report = poll_carrier_channel(channel)

    assert (report.polled, report.breaker, len(report.failed)) == (3, "closed", 3)


def test_slow_answers_time_out_count_as_failures_and_never_hang(channel, fake_carrier):
    _configure(channel, fake_carrier, timeout_seconds=0.2, breaker={"failures": 2, "open_seconds": 300})
    _manifest("1Z001", "1Z002", "1Z003")
    fake_carrier.outage = _server_error(delay=5)

    started = time.monotonic()
    report = poll_carrier_channel(channel)

    assert time.monotonic() - started < 2
    assert [f.reason for f in report.failed] == ["timed out after 0.2s", "timed out after 0.2s"]
    assert (report.breaker, report.skipped) == ("open", {BREAKER_OPEN: 1})


def test_connection_refused_counts_as_a_failure(channel, fake_carrier):
    _configure(channel, fake_carrier, breaker={"failures": 1, "open_seconds": 300})
    _manifest("1Z001", "1Z002")
    fake_carrier.stop()

    report = poll_carrier_channel(channel)

    assert report.failed[0].reason == "connection refused"
    assert (report.polled, report.breaker) == (1, "open")


def test_an_empty_answer_is_a_failure_with_a_reason(channel, fake_carrier):
    _configure(channel, fake_carrier)
    _manifest("1Z001")
    fake_carrier.reply("1Z001", 200, b"")

    report = poll_carrier_channel(channel)

    assert report.failed[0].reason == "the message is empty"
    assert not InboundMessage.objects.exists()


def test_a_channel_with_a_bad_configuration_is_reported_and_nothing_is_called(channel, fake_carrier):
    channel.mapping_overrides = {"url": "file:///etc/passwd", "rate_per_minute": 0, "adapter": "nope"}
    channel.save()
    _manifest("1Z001")

    report = poll_carrier_channel(channel)

    assert report.error.startswith("not polled, the configuration is invalid")
    assert "http:// or https://" in report.error
    assert "{tracking}" in report.error
    assert "rate_per_minute" in report.error
    assert "adapter" in report.error
    assert not fake_carrier.seen


@pytest.mark.parametrize(
    ("mapping", "headers", "problem"),
    [
        ([], None, "must be a JSON object"),
        ({"url": "http://h/{tracking}", "method": "DELETE"}, None, "method: GET or POST"),
        ({"url": "http://h/{tracking}"}, {"X": "a\r\nB: c"}, "headers"),
        ({"url": "http://h/{tracking}"}, ["Authorization"], "headers"),
        ({"url": "http://h/{tracking}", "timeout_seconds": True}, None, "timeout_seconds"),
        ({"url": "http://h/{tracking}", "breaker": {"failures": 0}}, None, "breaker.failures"),
    ],
)
def test_configuration_problems_are_named(mapping, headers, problem):
    with pytest.raises(PollConfigError, match=problem.replace(".", r"\.")):
        poll_config(mapping, headers)


def test_poll_all_carriers_runs_every_active_poll_channel(channel, fake_carrier, carrier):
    _configure(channel, fake_carrier)
    Channel.objects.create(
        partner=carrier, code="off", format=Channel.Format.POLL, active=False, mapping_overrides=_config()
    )
    _manifest("1Z001")

    reports = poll_all_carriers()

    assert [(r.channel, r.polled) for r in reports] == [("UPSN/track", 1)]


def test_a_second_run_of_the_same_channel_waits_for_the_first(channel, fake_carrier, monkeypatch):
    _configure(channel, fake_carrier)
    _manifest("1Z001")
    inner: list[PollReport] = []
    fetch = polling.fetch_tracking

    def fetch_while_another_run_starts(config, tracking):
        inner.append(poll_carrier_channel(channel))
        return fetch(config, tracking)

    monkeypatch.setattr(polling, "fetch_tracking", fetch_while_another_run_starts)
    outer = poll_carrier_channel(channel)

    assert (outer.polled, inner[0].polled) == (1, 0)
    assert inner[0].error == "not polled, another run of this channel is in progress"
    assert poll_carrier_channel(channel).polled == 1  # the lock was released


def test_a_run_stops_asking_when_its_time_is_up(channel, fake_carrier, monkeypatch):
    _configure(channel, fake_carrier)
    _manifest("1Z001", "1Z002", "1Z003")
    fake_carrier.reply("1Z001", 404, b"{}", delay=0.2)
    monkeypatch.setattr(polling, "RUN_SECONDS", 0.1)

    report = poll_carrier_channel(channel)

    assert (report.polled, report.skipped) == (1, {OUT_OF_TIME: 2})


# --- the network guard ----------------------------------------------------------------------------

METADATA_ANSWER = b'{"AccessKeyId": "ASIA-very-secret"}'


@pytest.fixture
def development(settings) -> None:
    """Plain http is allowed in development, so only the addresses can be what is refused."""
    settings.DEBUG = True
    settings.NETWORK_TRUSTED_TARGETS = []


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("localhost", "localhost resolves to 127.0.0.1, a loopback address"),
        ("[::1]", "::1 is a loopback address"),
        ("10.1.2.3", "10.1.2.3 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
    ],
)
def test_an_internal_target_is_never_fetched_and_the_run_says_why(
    channel, fake_carrier, development, guarded_connections, host, reason
):
    port = fake_carrier.url.split(":")[2].split("/")[0]
    _configure(channel, fake_carrier)
    channel.mapping_overrides["url"] = f"http://{host}:{port}/track/{{tracking}}"
    channel.save()
    _manifest("1Z001")
    fake_carrier.reply("1Z001", body=METADATA_ANSWER)

    report = poll_carrier_channel(channel)

    # An address is refused with the configuration, before the run; a name when connecting.
    [said] = [report.error] if report.error else [failure.reason for failure in report.failed]
    assert f"{reason}; only NETWORK_TRUSTED_TARGETS may allow it" in said
    assert (fake_carrier.seen, guarded_connections) == ([], [])
    assert not InboundMessage.objects.exists(), "nothing to show on a trace page"


def test_a_name_rebound_to_loopback_after_the_channel_was_saved_is_refused_when_polling(
    channel, fake_carrier, development, guarded_connections, monkeypatch
):
    answers = iter([[ipaddress.ip_address("93.184.215.14")], [ipaddress.ip_address("127.0.0.1")]])
    monkeypatch.setattr(network, "resolve", lambda host, port: next(answers))
    port = fake_carrier.url.split(":")[2].split("/")[0]
    channel.mapping_overrides = _config(url=f"http://tracking.example:{port}/track/{{tracking}}")
    channel.full_clean()  # saved while the name pointed at a public address
    channel.save()
    _manifest("1Z001")
    fake_carrier.reply("1Z001", body=METADATA_ANSWER)

    report = poll_carrier_channel(channel)

    assert report.failed[0].reason.startswith("not fetched: tracking.example resolves to 127.0.0.1, a loopback")
    assert (fake_carrier.seen, guarded_connections) == ([], [])
    assert not InboundMessage.objects.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://169.254.169.254/latest/{tracking}", "169.254.169.254 is a cloud metadata address"),
        ("https://localhost/track/{tracking}", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://api.carrier.example/track/{tracking}", "plain http is refused outside development"),
    ],
)
def test_saving_a_poll_channel_with_an_internal_or_plain_http_url_is_refused(carrier, url, reason):
    channel = Channel(partner=carrier, code="track", format=Channel.Format.POLL, mapping_overrides={"url": url})

    with pytest.raises(ValidationError) as refused:
        channel.full_clean()

    assert reason in refused.value.message_dict["mapping_overrides"][0]


def test_a_plain_http_url_is_not_polled_outside_development(channel, fake_carrier, settings):
    _configure(channel, fake_carrier)
    _manifest("1Z001")
    settings.NETWORK_TRUSTED_TARGETS = ["127.0.0.1"]  # the address, but not plain http to it

    report = poll_carrier_channel(channel)

    assert report.error.startswith("not polled, the configuration is invalid: url: plain http is refused")
    assert not fake_carrier.seen


def test_a_redirect_is_a_failure_and_never_followed(channel, fake_carrier):
    _configure(channel, fake_carrier)
    _manifest("1Z001")
    fake_carrier.reply("1Z001", 302, headers=(("Location", "http://169.254.169.254/latest/meta-data/"),))

    report = poll_carrier_channel(channel)

    assert report.failed[0].reason == "HTTP 302, redirected to http://169.254.169.254/latest/meta-data/ (not followed)"
    assert fake_carrier.tracking_asked == ["1Z001"]
    assert not InboundMessage.objects.exists()


def test_a_trickling_answer_ends_at_the_timeout_for_the_whole_exchange(channel, fake_carrier):
    _configure(channel, fake_carrier, timeout_seconds=0.5)
    _manifest("1Z001")
    fake_carrier.reply("1Z001", body=b'{"events": [', trickle=5)

    started = time.monotonic()
    report = poll_carrier_channel(channel)

    assert time.monotonic() - started < 1.2
    assert [f.reason for f in report.failed] == ["timed out after 0.5s"]
    assert not InboundMessage.objects.exists()


def test_an_answer_over_the_size_limit_is_a_failure_and_not_stored(channel, fake_carrier, settings):
    settings.POLL_MAX_RESPONSE_BYTES = 1000
    _configure(channel, fake_carrier)
    _manifest("1Z001")
    fake_carrier.events("1Z001", *[_event("shipment.in_transit", "1Z001", "2026-11-21T10:00:00+00:00")] * 20)

    report = poll_carrier_channel(channel)

    assert [f.reason for f in report.failed] == ["the response is over 1,000 bytes"]
    assert not InboundMessage.objects.exists()
