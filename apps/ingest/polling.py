"""Carrier tracking pull: ask a carrier's tracking endpoint about our open shipments.

A channel of format ``poll`` holds its configuration in ``mapping_overrides``::

    {"url": "https://api.carrier.example/track/{tracking}", "method": "GET", "adapter": "aftership",
     "rate_per_minute": 60, "timeout_seconds": 5, "batch": 200,
     "breaker": {"failures": 5, "open_seconds": 300}}

and the headers it sends (``{"Authorization": "Bearer ..."}``, the carrier's API key) in its
write-only ``poll_headers``.

Each run asks about at most ``batch`` open shipments of the channel's carrier, one request each,
and stores every 2xx body through ``message_receive`` with the adapter as its format: the
pipeline parses and applies it like any other message, and an unchanged tracker (the same bytes)
is a duplicate that creates nothing. The rate limit, the circuit breaker, the run lock and the
rotation cursor live in the Django cache, so they hold across workers when the cache is Redis.

Requests go through the network guard (``apps.partners.network``): the URL must be https (plain
http only in development or to a trusted target), internal addresses are refused when connecting,
redirects are failures (fix the channel's URL), and each answer is read up to
``POLL_MAX_RESPONSE_BYTES`` within ``timeout_seconds`` for the whole exchange.
"""

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q, QuerySet

from apps.ingest.models import InboundMessage
from apps.ingest.parsers import known_formats
from apps.ingest.services import MessageRejected, message_receive
from apps.partners import network
from apps.partners.models import Channel
from apps.timeline.models import Shipment, ShipmentStatus

logger = logging.getLogger(__name__)

MAX_BATCH = 5000
USER_AGENT = "ControlTower tracking pull"
# The carrier answered about this one tracking number: the endpoint itself is healthy.
SHIPMENT_LEVEL_STATUSES = frozenset({400, 404, 410, 422})
RATE_LIMITED = "rate_limited"
BREAKER_OPEN = "breaker_open"
OUT_OF_TIME = "out_of_time"
# A run stops asking after this long, so the run lock (held a minute longer) never expires under
# a live run, and a worker killed mid-run blocks the channel for minutes, not hours.
RUN_SECONDS = 15 * 60
STATE_TTL_SECONDS = 7 * 24 * 3600
TRACKING_PLACEHOLDER = "{tracking}"


class PollConfigError(ValueError):
    """The channel's ``mapping_overrides`` cannot drive a tracking pull; one line per problem."""


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PollConfig:
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    adapter: str = "auto"
    rate_per_minute: int = 60
    timeout_seconds: float = 5.0
    batch: int = 200
    breaker_failures: int = 5
    breaker_open_seconds: float = 300.0

    def url_for(self, tracking: str) -> str:
        return self.url.replace(TRACKING_PLACEHOLDER, quote(tracking, safe=""))

    def body_for(self, tracking: str) -> bytes | None:
        """A POST body is a JSON template: the tracking number goes in JSON-escaped."""
        if self.body is None:
            return None
        return self.body.replace(TRACKING_PLACEHOLDER, json.dumps(tracking)[1:-1]).encode()


def poll_config(mapping: Any, headers: Any = None) -> PollConfig:
    """Read and check a poll channel's ``mapping_overrides`` and ``poll_headers``; raises
    PollConfigError naming every problem at once, so the admin can fix them in one go."""
    if not isinstance(mapping, dict):
        raise PollConfigError("mapping_overrides must be a JSON object")
    problems: list[str] = []
    breaker = mapping.get("breaker", {})
    if not isinstance(breaker, dict):
        problems.append("breaker: expected an object such as {'failures': 5, 'open_seconds': 300}")
        breaker = {}
    config = PollConfig(
        url=_url(mapping.get("url"), problems),
        method=_method(mapping.get("method", "GET"), problems),
        headers=_headers({} if headers is None else headers, problems),
        body=_body(mapping.get("body"), problems),
        adapter=_adapter(mapping.get("adapter", "auto"), problems),
        rate_per_minute=int(_number(mapping, "rate_per_minute", 60, 1, 6000, problems)),
        timeout_seconds=_number(mapping, "timeout_seconds", 5, 0.05, 60, problems),
        batch=int(_number(mapping, "batch", 200, 1, MAX_BATCH, problems)),
        breaker_failures=int(_number(breaker, "failures", 5, 1, 1000, problems, prefix="breaker.")),
        breaker_open_seconds=_number(breaker, "open_seconds", 300, 1, 86400, problems, prefix="breaker."),
    )
    if problems:
        raise PollConfigError("; ".join(problems))
    return config


def _url(value: Any, problems: list[str]) -> str:
    if not isinstance(value, str) or not value:
        problems.append("url: required, e.g. https://api.carrier.example/track/{tracking}")
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("url: must be an http:// or https:// address")
    elif refusal := network.url_refusal(value):
        problems.append(f"url: {refusal}")
    if TRACKING_PLACEHOLDER not in value:
        problems.append("url: must contain {tracking}, where the tracking number goes")
    return value


def _method(value: Any, problems: list[str]) -> str:
    method = value.upper() if isinstance(value, str) else value
    if method not in ("GET", "POST"):
        problems.append("method: GET or POST")
        return "GET"
    return method


def _headers(value: Any, problems: list[str]) -> dict[str, str]:
    valid = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) and "\n" not in k + v and "\r" not in k + v for k, v in value.items()
    )
    if not valid:
        problems.append("headers: expected an object of single-line text values")
        return {}
    return value


def _body(value: Any, problems: list[str]) -> str | None:
    if value is not None and not isinstance(value, str):
        problems.append('body: expected a JSON text template such as {"tracking_number": "{tracking}"}')
        return None
    return value


def _adapter(value: Any, problems: list[str]) -> str:
    if value == "auto":
        return value
    if value not in known_formats():
        problems.append(f"adapter: one of {', '.join(known_formats())}")
        return "auto"
    return value


def _number(
    mapping: dict[str, Any],
    name: str,
    default: float,
    low: float,
    high: float,
    problems: list[str],
    *,
    prefix: str = "",
) -> float:
    value = mapping.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        problems.append(f"{prefix}{name}: a number from {low:g} to {high:g}")
        return default
    return value


# --- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollFailure:
    tracking: str
    reason: str


@dataclass
class PollReport:
    """What one run did. ``polled`` counts requests made; ``stored`` new messages; ``unchanged``
    bodies the pipeline already had; ``skipped`` shipments not asked about, by reason;
    ``breaker`` the breaker's state at the end; ``error`` why the channel was not polled at all."""

    channel: str
    polled: int = 0
    stored: int = 0
    unchanged: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[PollFailure] = field(default_factory=list)
    breaker: str = ""
    error: str = ""

    def skip(self, reason: str, count: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- circuit breaker and rate limit -----------------------------------------------------------


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive endpoint failures; open → half-open once
    ``open_seconds`` have passed, where one probe decides: success closes, failure re-opens.

    The state is in the cache, written at every change. Read-modify-write is safe because one
    run per channel holds the run lock.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, channel: Channel, *, failures: int, open_seconds: float) -> None:
        self.channel = channel
        self.key = f"ingest:poll:{channel.pk}:breaker"
        self.threshold = failures
        self.open_seconds = open_seconds
        saved = cache.get(self.key) or {}
        self.state: str = saved.get("state", self.CLOSED)
        self.failures: int = saved.get("failures", 0)
        self.opened_at: float = saved.get("opened_at", 0.0)

    def allow(self) -> bool:
        if self.state == self.OPEN:
            if time.time() - self.opened_at < self.open_seconds:
                return False
            self._move(self.HALF_OPEN, "probing with one request")
        return True

    def succeeded(self) -> None:
        if self.state != self.CLOSED:
            self._move(self.CLOSED, "the probe succeeded")
        elif self.failures:
            self.failures = 0
            self._save()

    def failed(self, reason: str) -> None:
        self.failures += 1
        if self.state == self.HALF_OPEN:
            self._open(f"the probe failed ({reason})")
        elif self.failures >= self.threshold:
            self._open(f"{self.failures} consecutive failures, the last: {reason}")
        else:
            self._save()

    def _open(self, why: str) -> None:
        self.opened_at = time.time()
        self._move(self.OPEN, f"{why}; calls resume in {self.open_seconds:g}s")

    def _move(self, state: str, why: str) -> None:
        level = logging.WARNING if state == self.OPEN else logging.INFO
        logger.log(level, "tracking pull %s: circuit breaker %s → %s: %s", self.channel, self.state, state, why)
        self.state = state
        if state == self.CLOSED:
            self.failures = 0
        self._save()

    def _save(self) -> None:
        state = {"state": self.state, "failures": self.failures, "opened_at": self.opened_at}
        cache.set(self.key, state, timeout=STATE_TTL_SECONDS)


def _take_token(channel: Channel, per_minute: int) -> bool:
    """A fixed one-minute window counted with the cache's atomic increment, shared by workers."""
    key = f"ingest:poll:{channel.pk}:rate:{int(time.time() // 60)}"
    cache.add(key, 0, timeout=120)
    try:
        return cache.incr(key) <= per_minute
    except ValueError:  # the window expired between add and incr: this call opens the next one
        cache.set(key, 1, timeout=120)
        return True


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """One answer: a 2xx body, or the problem and whether it counts against the endpoint."""

    body: bytes | None = None
    content_type: str = ""
    problem: str = ""
    endpoint_failed: bool = False


def fetch_tracking(config: PollConfig, tracking: str) -> Fetched:
    """Ask the endpoint about one tracking number, within ``timeout_seconds`` in total."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **config.headers}
    data = config.body_for(tracking)
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    limit = min(settings.POLL_MAX_RESPONSE_BYTES, settings.INGEST_MAX_MESSAGE_BYTES)
    try:
        reply = network.request(
            config.method,
            config.url_for(tracking),
            headers=headers,
            body=data,
            timeout=config.timeout_seconds,
            max_bytes=limit,
        )
    except network.TargetRefused as exc:
        return Fetched(problem=f"not fetched: {exc}", endpoint_failed=True)
    except network.TimedOut:
        return Fetched(problem=f"timed out after {config.timeout_seconds:g}s", endpoint_failed=True)
    except network.RequestFailed as exc:
        return Fetched(problem=str(exc), endpoint_failed=True)
    if not 200 <= reply.status < 300:
        return _refused(reply.status, reply.headers.get("location"))
    if reply.truncated:
        return Fetched(problem=f"the response is over {limit:,} bytes")
    return Fetched(body=reply.body, content_type=reply.headers.get("content-type", ""))


def _refused(status: int, location: str | None) -> Fetched:
    if status == 404:
        return Fetched(problem="unknown tracking number (HTTP 404)")
    if status in SHIPMENT_LEVEL_STATUSES:
        return Fetched(problem=f"the carrier refused this tracking number (HTTP {status})")
    redirect = f", redirected to {location} (not followed)" if location else ""
    return Fetched(problem=f"HTTP {status}{redirect}", endpoint_failed=True)


# --- which shipments --------------------------------------------------------------------------


def open_shipments(channel: Channel) -> QuerySet[Shipment]:
    """The channel's carrier's shipments with a tracking number that are not delivered yet,
    oldest carrier news first (never heard of first)."""
    return (
        Shipment.objects.filter(carrier_id=channel.partner_id, delivered_at__isnull=True)
        .exclude(tracking_number="")
        .exclude(status__in=[ShipmentStatus.DELIVERED, ShipmentStatus.POD_RECEIVED])
        .order_by(F("last_carrier_event_at").asc(nulls_first=True), "pk")
    )


def _next_shipments(channel: Channel, batch: int) -> list[tuple[int, str, datetime | None]]:
    """Up to ``batch`` open shipments, continuing after the last one asked about and wrapping.

    Without the cursor, trackers that never change would keep the oldest places and the same
    first ``batch`` shipments would be polled on every run, starving the rest.
    """
    shipments = open_shipments(channel).values_list("pk", "tracking_number", "last_carrier_event_at")
    cursor = cache.get(_cursor_key(channel))
    rows = list(shipments.filter(_after(*cursor))[:batch]) if cursor else []
    if len(rows) < batch:
        seen = {row[0] for row in rows}
        rows += [row for row in shipments[: batch - len(rows)] if row[0] not in seen]
    return rows


def _after(last_event_at: datetime | None, pk: int) -> Q:
    if last_event_at is None:
        return Q(last_carrier_event_at__isnull=True, pk__gt=pk) | Q(last_carrier_event_at__isnull=False)
    return Q(last_carrier_event_at__gt=last_event_at) | Q(last_carrier_event_at=last_event_at, pk__gt=pk)


def _cursor_key(channel: Channel) -> str:
    return f"ingest:poll:{channel.pk}:cursor"


# --- the run ----------------------------------------------------------------------------------


def pollable_channels() -> QuerySet[Channel]:
    return (
        Channel.objects.filter(
            format=Channel.Format.POLL, active=True, direction=Channel.Direction.INBOUND, partner__active=True
        )
        .select_related("partner")
        .order_by("pk")
    )


def poll_all_carriers() -> list[PollReport]:
    """Poll every active poll channel, one after the other."""
    return [poll_carrier_channel(channel) for channel in pollable_channels()]


def poll_carrier_channel(channel: Channel) -> PollReport:
    """Ask the channel's carrier about its open shipments and store the answers.

    One run per channel at a time (a lock in the cache, expiring after the longest a run can
    take, ``RUN_SECONDS``); a second one returns at once with ``error`` saying so. No database
    transaction is held while waiting on the carrier.
    """
    report = PollReport(channel=str(channel))
    try:
        config = poll_config(channel.mapping_overrides, channel.poll_headers)
    except PollConfigError as exc:
        report.error = f"not polled, the configuration is invalid: {exc}"
        logger.error("tracking pull %s: %s", channel, report.error)
        return report
    lock_key, token = f"ingest:poll:{channel.pk}:lock", uuid.uuid4().hex
    if not cache.add(lock_key, token, timeout=RUN_SECONDS + int(config.timeout_seconds) + 60):
        report.error = "not polled, another run of this channel is in progress"
        return report
    try:
        _run(channel, config, report)
    finally:
        if cache.get(lock_key) == token:
            cache.delete(lock_key)
    logger.info(
        "tracking pull %s: polled %d, stored %d, unchanged %d, skipped %s, failed %d",
        channel,
        report.polled,
        report.stored,
        report.unchanged,
        report.skipped or 0,
        len(report.failed),
    )
    return report


def _run(channel: Channel, config: PollConfig, report: PollReport) -> None:
    breaker = CircuitBreaker(channel, failures=config.breaker_failures, open_seconds=config.breaker_open_seconds)
    shipments = _next_shipments(channel, config.batch)
    stop_at = time.monotonic() + RUN_SECONDS
    for index, (pk, tracking, last_event_at) in enumerate(shipments):
        blocked = _blocked(channel, config, breaker, stop_at)
        if blocked:
            report.skip(blocked, len(shipments) - index)
            break
        _poll_one(channel, config, breaker, tracking, report)
        cache.set(_cursor_key(channel), (last_event_at, pk), timeout=STATE_TTL_SECONDS)
    report.breaker = breaker.state


def _blocked(channel: Channel, config: PollConfig, breaker: CircuitBreaker, stop_at: float) -> str:
    """Why the next call may not be made, or "" when it may. The breaker goes before the rate
    limit, so an open breaker spends no tokens."""
    if time.monotonic() > stop_at:
        return OUT_OF_TIME
    if not breaker.allow():
        return BREAKER_OPEN
    if not _take_token(channel, config.rate_per_minute):
        return RATE_LIMITED
    return ""


def _poll_one(channel: Channel, config: PollConfig, breaker: CircuitBreaker, tracking: str, report: PollReport) -> None:
    fetched = fetch_tracking(config, tracking)
    report.polled += 1
    if fetched.endpoint_failed:
        breaker.failed(fetched.problem)
    else:
        breaker.succeeded()
    if fetched.body is None:
        report.failed.append(PollFailure(tracking=tracking, reason=fetched.problem))
    else:
        _store(channel, config, tracking, fetched, report)


def _store(channel: Channel, config: PollConfig, tracking: str, fetched: Fetched, report: PollReport) -> None:
    try:
        _, created = message_receive(
            body=fetched.body or b"",
            source=InboundMessage.Source.POLL,
            partner=channel.partner,
            channel=channel,
            format=config.adapter,
            filename=tracking,
            content_type=fetched.content_type,
        )
    except MessageRejected as exc:
        report.failed.append(PollFailure(tracking=tracking, reason=str(exc)))
        return
    if created:
        report.stored += 1
    else:
        report.unchanged += 1
