"""Publishing business events to subscribers, reliably.

``events_publish`` runs inside ``apply_events``' transaction (the transactional outbox): the
milestone, its ``OutboundEvent`` and one ``Delivery`` per matching subscription commit together.
Once it commits, ``endpoint_drain`` sends what is due to each endpoint: it claims a batch
(``SELECT ... FOR UPDATE SKIP LOCKED``, so a redelivered task is harmless), asks the endpoint's
circuit breaker, signs and sends the batch concurrently, and records it, a fixed number of queries
per batch. A sender killed mid-delivery leaves the claim to expire; ``deliveries_sweep`` hands it
out again, and the receiver dedupes on ``webhook-id``: at-least-once, never lost.
"""

import json
import random
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection, connections, transaction
from django.db.models import Exists, F, Max, Min, OuterRef, QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.ingest.models import OutboundMessage
from apps.ingest.webhooks import signature_for
from apps.outbound.models import (
    MAX_IN_FLIGHT,
    Delivery,
    DeliveryAttempt,
    Endpoint,
    OutboundEvent,
    Subscription,
    new_secret,
)
from apps.outbound.routing import OrderScope, Route, allowed_hosts_error, route_of
from apps.partners import network, standard_webhooks
from apps.partners.credentials import rotation_grace
from apps.timeline.models import Identity, Milestone, Order, Shipment, identity, pks_by_identity

USER_AGENT = "ControlTower-Outbound/1"
RESPONSE_EXCERPT = 2000
# A delivery waiting for an earlier one of the same order looks again after this long at the
# latest (the earlier one releases it as soon as it is delivered).
ORDER_RECHECK = timedelta(seconds=60)
SWEEP_BATCH = 2000
PRUNE_BATCH = 1000
# Deliveries one drain claims, sends and records at a time: a fixed handful of queries each.
SEND_BATCH = 200
RETRYABLE_STATUS = frozenset({408, 425, 429})
# Names the request carrying a group of events (uuid5 over their deliveries' keys).
BATCH_NAMESPACE = uuid.UUID("6f1d3c2e-5b7a-4c8e-9a41-0d2f7e8b9c10")
# Acknowledgments (OutboundMessage kinds) and the subscription format that carries each.
ACKNOWLEDGMENT_FORMATS = {"997": Subscription.Format.X12, "CONTRL": Subscription.Format.EDIFACT}
# Attributes people add by hand (who released an invoice, and their note) stay inside.
INTERNAL_ATTRIBUTES = frozenset({"note", "released_by", "triggered_by", "generated_by"})


# --- publishing (inside apply_events' transaction) ------------------------------------------------


@dataclass(frozen=True)
class ShipmentContext:
    id: int
    number: str
    tracking_number: str
    carrier: str | None


@dataclass(frozen=True)
class Fact:
    """A milestone new to the timeline, with the orders it is about (a shipment may serve several)."""

    milestone: Milestone
    orders: list[OrderScope]
    order_numbers: dict[int, str]
    shipment: ShipmentContext | None


def events_publish(milestones: Sequence[Milestone]) -> None:
    """Write the outbox for milestones just recorded: events, deliveries, customer e-mails.

    Call inside the transaction that records them; sending starts once it commits.
    """
    from apps.outbound.notifications import customer_notifications_create, notification_settings

    milestones = [m for m in milestones if m.order_id or m.shipment_id]
    if not milestones:
        return
    routes = _active_routes()
    settings_by_customer = notification_settings()
    if not routes and not settings_by_customer:
        return
    facts = _facts(milestones)
    if routes:
        _write_outbox(facts, routes)
    if settings_by_customer:
        customer_notifications_create(facts=facts, settings_by_customer=settings_by_customer)


def acknowledgments_publish(*, inbound_id: int) -> None:
    """Deliver the acknowledgments of one inbound message to its sender's subscriptions that take
    them in their format: 997s to X12 ones, CONTRLs to EDIFACT ones (same transaction)."""
    documents = list(
        OutboundMessage.objects.filter(inbound_id=inbound_id, kind__in=ACKNOWLEDGMENT_FORMATS, partner__isnull=False)
    )
    if not documents:
        return
    subscriptions = Subscription.objects.filter(
        active=True,
        acknowledgments=True,
        format__in={ACKNOWLEDGMENT_FORMATS[document.kind] for document in documents},
        partner_id=documents[0].partner_id,
    ).values_list("pk", "format")
    rows = [
        Delivery(subscription_id=sub, document=document, kind=document.kind, next_attempt_at=timezone.now())
        for sub, format in subscriptions
        for document in documents
        if ACKNOWLEDGMENT_FORMATS[document.kind] == format
    ]
    if rows:
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)
        _dispatch_on_commit(Delivery.objects.filter(document__in=documents, status=Delivery.Status.PENDING))


def _active_routes() -> list[Route]:
    subscriptions = Subscription.objects.filter(active=True).exclude(event_kinds=[]).select_related("partner")
    subscriptions = subscriptions.prefetch_related("customers")
    return [
        route_of(
            id=sub.pk,
            partner=sub.partner,
            patterns=sub.event_kinds,
            format=sub.format,
            customer_ids={customer.pk for customer in sub.customers.all()},
            regions=sub.regions,
        )
        for sub in subscriptions
    ]


def _facts(milestones: list[Milestone]) -> list[Fact]:
    shipment_ids = {m.shipment_id for m in milestones if m.shipment_id}
    shipments = {
        row["id"]: ShipmentContext(row["id"], row["number"], row["tracking_number"], row["carrier__code"])
        for row in Shipment.objects.filter(pk__any=shipment_ids).values(
            "id", "number", "tracking_number", "carrier__code"
        )
    }
    orders_of_shipment: dict[int, set[int]] = defaultdict(set)
    for shipment_id, order_id in Shipment.orders.through.objects.filter(shipment_id__any=shipment_ids).values_list(
        "shipment_id", "order_id"
    ):
        orders_of_shipment[shipment_id].add(order_id)
    order_ids = {m.order_id for m in milestones if m.order_id} | {o for ids in orders_of_shipment.values() for o in ids}
    orders = {
        pk: (OrderScope(pk, customer_id, region), number)
        for pk, customer_id, region, number in Order.objects.filter(pk__any=order_ids).values_list(
            "pk", "customer_id", "region", "number"
        )
    }
    facts = []
    for milestone in milestones:
        ids = {milestone.order_id} if milestone.order_id else orders_of_shipment.get(milestone.shipment_id, set())
        scopes = sorted((orders[i][0] for i in ids if i in orders), key=lambda scope: scope.id)
        facts.append(
            Fact(
                milestone=milestone,
                orders=scopes,
                order_numbers={scope.id: orders[scope.id][1] for scope in scopes},
                shipment=shipments.get(milestone.shipment_id),
            )
        )
    return facts


def _write_outbox(facts: list[Fact], routes: list[Route]) -> None:
    wanted: dict[Identity, list[tuple[int, int | None]]] = {}
    for fact in facts:
        matches = [
            (route.id, order)
            for route in routes
            for ok, order in [route.order_for(fact.milestone.kind, fact.orders)]
            if ok
        ]
        if matches:
            wanted[identity(fact.milestone)] = matches
    if not wanted:
        return
    by_id = {identity(fact.milestone): fact for fact in facts}
    OutboundEvent.objects.bulk_create(
        [
            OutboundEvent(
                event_id=fact.milestone.event_id,
                source_partner_id=fact.milestone.source_partner_id,
                kind=fact.milestone.kind,
                occurred_at=fact.milestone.occurred_at,
                order_id=fact.orders[0].id if fact.orders else None,
                shipment_id=fact.milestone.shipment_id,
                payload=document_of(fact),
            )
            for fact in (by_id[key] for key in wanted)
        ],
        ignore_conflicts=True,
    )
    events = pks_by_identity(OutboundEvent, (key.event_id for key in wanted))
    now = timezone.now()
    Delivery.objects.bulk_create(
        [
            Delivery(
                subscription_id=subscription_id,
                event_id=events[key],
                order_id=order_id,
                kind=by_id[key].milestone.kind,
                next_attempt_at=now,
            )
            for key, matches in wanted.items()
            for subscription_id, order_id in matches
        ],
        ignore_conflicts=True,
    )
    _dispatch_on_commit(Delivery.objects.filter(event_id__in=events.values(), status=Delivery.Status.PENDING))


def document_of(fact: Fact) -> dict:
    """The canonical JSON a subscriber receives: the event as applied, plus its order and shipment."""
    milestone = fact.milestone
    payload = milestone.payload
    document = {
        key: payload[key]
        for key in ("event_id", "kind", "schema_version", "occurred_at", "references", "location", "amount", "currency")
        if payload.get(key) is not None
    }
    if payload.get("estimated_delivery_at"):
        document["estimated_delivery_at"] = payload["estimated_delivery_at"]
    document["lines"] = milestone.lines
    attributes = {k: v for k, v in (payload.get("attributes") or {}).items() if k not in INTERNAL_ATTRIBUTES}
    if attributes:
        document["attributes"] = attributes
    source = payload.get("source") or {}
    document["source"] = {"partner": source.get("partner"), "channel": source.get("channel")}
    document["orders"] = [
        {"number": fact.order_numbers[scope.id], "region": scope.region or None} for scope in fact.orders
    ]
    if fact.shipment:
        document["shipment"] = {
            "number": fact.shipment.number,
            "tracking_number": fact.shipment.tracking_number or None,
            "carrier": fact.shipment.carrier,
        }
    return document


# --- sending ----------------------------------------------------------------------------------------


@dataclass
class Request:
    body: bytes
    headers: dict[str, str]
    filename: str
    # time.monotonic() by which the exchange must end: the claim plus the subscription's timeout,
    # which leaves the whole claim grace for recording the attempt before the claim expires.
    deadline: float = float("inf")


@dataclass
class Response:
    status_code: int | None = None
    body: str = ""
    error: str = ""
    retry_after: float | None = None
    duration_ms: int = 0
    permanent: bool = False  # nothing was sent and trying again cannot help (unwritable, host not allowed)
    finished: float = 0.0  # time.monotonic() when the answer (or the failure) came

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Worth another try: no answer, a timeout, a server error or 'slow down'."""
        if self.status_code is None:
            return not self.permanent
        return self.status_code >= 500 or self.status_code in RETRYABLE_STATUS


@dataclass
class Outcome:
    delivery: Delivery
    response: Response
    result: str  # delivered, retry or dead


def endpoint_drain(*, endpoint_id: int) -> int:
    """Send what is due to one endpoint, a batch at a time, until nothing is; returns how many
    deliveries were attempted.

    One drain per endpoint runs at a time (a cache lock): a drain started meanwhile returns at once,
    since the running one claims its deliveries too. Each batch costs a fixed handful of queries
    (read the breaker, claim, check order, record) and sends up to the endpoint's ``max_in_flight``
    requests at a time, so a slow or dead endpoint holds up only itself.
    """
    lock = f"outbound:drain:{endpoint_id}"
    # Held as long as a claim: a drain that died frees its endpoint when its claims expire.
    longest = Subscription.objects.filter(endpoint_id=endpoint_id).aggregate(longest=Max("timeout_seconds"))
    hold = max(int((longest["longest"] or 0) + settings.OUTBOUND_CLAIM_GRACE_SECONDS), 1)
    attempted = 0
    while cache.add(lock, 1, timeout=hold):
        try:
            sent, emptied = _drain(endpoint_id, lock, hold)
        finally:
            cache.delete(lock)
        attempted += sent
        # Unless the breaker stopped it: a delivery may have come due after the last claim found
        # nothing, and its own drain found the lock taken.
        if not emptied or not _due(endpoint_id, timezone.now()).exists():
            break
    return attempted


def _drain(endpoint_id: int, lock: str, hold: int) -> tuple[int, bool]:
    """Batches until nothing is due (returns the attempts and True) or the breaker refuses (False).

    While one batch is in flight the next is claimed and queued on the pool before the first is
    recorded, so the endpoint is kept busy during the database work; a probe goes alone."""
    attempted, flight = 0, None
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:  # removed since the drain was queued: nothing goes there any more
        return 0, False
    with ThreadPoolExecutor(max_workers=endpoint.max_in_flight, thread_name_prefix="deliver") as pool:
        while True:
            cache.touch(lock, hold)
            now = timezone.now()
            admission = breaker_admit(endpoint=endpoint, now=now)
            probing = endpoint.state != Endpoint.State.CLOSED
            if flight is not None and (probing or not admission.admitted):
                attempted += len(_finish(flight, endpoint))
                flight = None
            if not admission.admitted:
                return attempted, False
            claimed = _claim(_due(endpoint_id, now), now, limit=1 if probing else SEND_BATCH)
            following = _start(claimed, now=now, pool=pool, width=endpoint.max_in_flight) if claimed else None
            if flight is not None:
                attempted += len(_finish(flight, endpoint))
            if following is None:
                return attempted, True
            flight = following
            if probing:  # its answer decides whether anything follows
                attempted += len(_finish(flight, endpoint))
                flight = None
            endpoint = Endpoint.objects.get(pk=endpoint_id)


def _due(endpoint_id: int, now: datetime) -> QuerySet[Delivery]:
    return Delivery.objects.filter(
        subscription__endpoint_id=endpoint_id,
        subscription__active=True,
        status=Delivery.Status.PENDING,
        next_attempt_at__lte=now,
    ).order_by("next_attempt_at", "pk")


def delivery_send(delivery_id: int, *, now: datetime | None = None) -> Outcome | None:
    """Send one delivery now if it is due and nothing holds it back. Returns None when it was not
    sent (not due, taken by another sender, waiting for an earlier event of its order, breaker
    open)."""
    now = now or timezone.now()
    claimed = _claim(Delivery.objects.filter(pk=delivery_id, next_attempt_at__lte=now, subscription__active=True), now)
    if not claimed:
        return None
    endpoint = endpoint_of(claimed[0].subscription)
    admission = breaker_admit(endpoint=endpoint, now=now)
    if not admission.admitted:
        _give_back(claimed, retry_at=admission.retry_at, note="circuit breaker open")
        return None
    outcomes = _send(claimed, endpoint=endpoint, now=now, pool=None)
    return outcomes[0] if outcomes else None


def _claim(due: QuerySet[Delivery], now: datetime, *, limit: int = 1) -> list[Delivery]:
    """Take up to ``limit`` pending deliveries of ``due``: locked as read (skipping rows another
    sender holds), marked sending until their timeout and the grace have passed, and their attempt
    counted. Their subscriptions and contents are read once each, however many deliveries share
    them: a batch costs the same handful of queries whatever its size."""
    with transaction.atomic():
        claimed = list(
            due.filter(status=Delivery.Status.PENDING).select_for_update(skip_locked=True, of=("self",))[:limit]
        )
        if not claimed:
            return []
        subscriptions = Subscription.objects.select_related("partner", "channel", "endpoint").in_bulk(
            {delivery.subscription_id for delivery in claimed}
        )
        longest = max(subscription.timeout_seconds for subscription in subscriptions.values())
        claimed_until = now + timedelta(seconds=longest + settings.OUTBOUND_CLAIM_GRACE_SECONDS)
        Delivery.objects.filter(pk__any=[delivery.pk for delivery in claimed]).update(
            status=Delivery.Status.SENDING,
            claimed_until=claimed_until,
            held_by=None,
            attempts=F("attempts") + 1,
            logged_attempts=F("logged_attempts") + 1,
        )
    events = OutboundEvent.objects.in_bulk({delivery.event_id for delivery in claimed if delivery.event_id})
    documents = OutboundMessage.objects.in_bulk({d.document_id for d in claimed if d.document_id})
    for delivery in claimed:
        delivery.status, delivery.claimed_until, delivery.held_by_id = Delivery.Status.SENDING, claimed_until, None
        delivery.attempts += 1
        delivery.logged_attempts += 1
        delivery.subscription = subscriptions[delivery.subscription_id]
        delivery.event = events.get(delivery.event_id)
        delivery.document = documents.get(delivery.document_id)
    return claimed


def _give_back(deliveries: list[Delivery], *, retry_at: datetime, note: str) -> None:
    """Return claimed deliveries untried: pending again, their attempt not counted."""
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=Delivery.Status.SENDING).update(
        status=Delivery.Status.PENDING,
        claimed_until=None,
        next_attempt_at=retry_at,
        last_error=note,
        attempts=F("attempts") - 1,
        logged_attempts=F("logged_attempts") - 1,
    )


@dataclass
class Sent:
    """A delivery of a batch: sent (``request``, ``response``), or given back untried with a note."""

    delivery: Delivery
    request: Request | None = None
    response: Response | None = None
    held_by: int | None = None
    note: str = ""


def _send(claimed: list[Delivery], *, endpoint: Endpoint, now: datetime, pool: Executor | None) -> list[Outcome]:
    """Send claimed deliveries of one endpoint and record them."""
    return _finish(_start(claimed, now=now, pool=pool), endpoint)


@dataclass
class Flight:
    """A batch on its way: its senders (futures on a pool, each returning what it sent), and the
    deliveries waiting for an earlier one."""

    now: datetime
    waiting: list[Sent]
    senders: list[Future]


def _start(claimed: list[Delivery], *, now: datetime, pool: Executor | None, width: int = 1) -> Flight:
    """Sign the batch and send it, concurrently on ``pool`` (at once, in turn, without one). The
    deliveries of one order for an ordered subscription form a lane, sent in turn: a lane stops at
    its first failure, and what follows waits for it."""
    started = time.monotonic()
    lanes, waiting = _lanes(claimed)
    lanes, groups = _grouped(lanes)
    jobs = [partial(_run_lane, [_prepared(delivery, now, started) for delivery in lane]) for lane in lanes]
    jobs += [partial(_run_group, _prepared_group(group, now, started)) for group in groups]
    return Flight(now=now, waiting=waiting, senders=_senders(jobs, pool, width))


def _grouped(lanes: list[list[Delivery]]) -> tuple[list[list[Delivery]], list[list[Delivery]]]:
    """The lanes left, and the events of subscriptions that take batches in groups of their
    ``batch_size`` (canonical JSON to a URL, not ordered: each such event is a lane of its own)."""
    kept, by_subscription = [], defaultdict(list)
    for lane in lanes:
        subscription = lane[0].subscription
        if _batches(subscription) and lane[0].event_id:
            by_subscription[subscription.pk].append(lane[0])
        else:
            kept.append(lane)
    groups = [
        deliveries[start : start + deliveries[0].subscription.batch_size]
        for deliveries in by_subscription.values()
        for start in range(0, len(deliveries), deliveries[0].subscription.batch_size)
    ]
    return kept, groups


def _batches(subscription: Subscription) -> bool:
    return (
        subscription.batch_size > 1
        and not subscription.ordered
        and subscription.format == Subscription.Format.JSON
        and bool(subscription.target_url)
    )


def _prepared_group(deliveries: list[Delivery], now: datetime, started: float) -> list[Sent]:
    """One signed request carrying the events of ``deliveries`` as ``{"events": [...]}``. Its id
    (``webhook-id``, ``Idempotency-Key``) follows from the deliveries it holds; a retry may group
    them otherwise, so receivers dedupe on each event's ``event_id`` and ``source``."""
    subscription = deliveries[0].subscription
    documents = [delivery.event.payload for delivery in deliveries]
    body = json.dumps({"events": documents}, separators=(",", ":"), sort_keys=True).encode()
    key = str(uuid.uuid5(BATCH_NAMESPACE, " ".join(str(delivery.idempotency_key) for delivery in deliveries)))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(subscription, message_id=key, body=body, now=now),
        "Idempotency-Key": key,
        "X-Event-Kind": "batch",
        "X-Delivery-Id": ",".join(str(delivery.pk) for delivery in deliveries),
        "X-Delivery-Attempt": str(max(delivery.attempts for delivery in deliveries)),
    }
    request = Request(body=body, headers=headers, filename="", deadline=started + subscription.timeout_seconds)
    return [Sent(delivery, request) for delivery in deliveries]


def _run_group(group: list[Sent]) -> list[Sent]:
    """Send a group's one request; its answer is each of its deliveries' (with too little time left,
    they all go back to the queue untried)."""
    subscription, request = group[0].delivery.subscription, group[0].request
    if request.deadline - time.monotonic() < subscription.timeout_seconds / 2:
        for sent in group:
            sent.request = None
        return group
    response = _transport(subscription)(subscription, request)
    response.finished = time.monotonic()
    for sent in group:
        sent.response = response
    return group


def _senders(jobs: list[Callable[[], list[Sent]]], pool: Executor | None, width: int) -> list[Future]:
    """Run ``jobs`` with ``width`` senders on ``pool``, each taking the next job when it is done:
    a submission per sender, not per job (submitting a job and waking a thread for it, once per
    request, was a good share of the drain's own time)."""
    queue = deque(jobs)

    def sender() -> list[Sent]:
        done: list[Sent] = []
        while queue:
            try:
                job = queue.popleft()
            except IndexError:  # another sender took the last one
                break
            done += job()
        return done

    return [_submit(sender, pool) for _ in range(min(width, len(jobs)))]


def _submit(job: Callable[[], list[Sent]], pool: Executor | None) -> Future:
    if pool is not None:
        return pool.submit(job)
    done: Future = Future()
    done.set_result(job())
    return done


def _finish(flight: Flight, endpoint: Endpoint) -> list[Outcome]:
    """Wait for a batch's answers and record them."""
    results = [*flight.waiting, *(sent for sender in flight.senders for sent in sender.result())]
    return _record(results, endpoint, flight.now)


def _lanes(claimed: list[Delivery]) -> tuple[list[list[Delivery]], list[Sent]]:
    """The deliveries in lanes: one per delivery, or one per order of an ordered subscription; and
    the lanes that wait for an earlier delivery of their order outside this batch (one query, only
    for ordered subscriptions)."""
    lanes: dict[tuple[int, int] | int, list[Delivery]] = defaultdict(list)
    for delivery in sorted(claimed, key=lambda d: d.pk):
        ordered = delivery.subscription.ordered and delivery.order_id is not None
        lanes[(delivery.subscription_id, delivery.order_id) if ordered else delivery.pk].append(delivery)
    ordered_lanes = {key: lane for key, lane in lanes.items() if isinstance(key, tuple)}
    if not ordered_lanes:
        return list(lanes.values()), []
    earlier = (
        Delivery.objects.filter(
            subscription_id__in={sub for sub, _ in ordered_lanes},
            order_id__in={order for _, order in ordered_lanes},
        )
        .exclude(status=Delivery.Status.DELIVERED)
        .exclude(pk__in=[delivery.pk for delivery in claimed])
        .order_by()
        .values_list("subscription_id", "order_id")
        .annotate(first=Min("pk"))
    )
    waiting: list[Sent] = []
    for subscription_id, order_id, first in earlier:
        lane = ordered_lanes.get((subscription_id, order_id))
        if lane and first < lane[0].pk:
            note = f"waiting for delivery #{first} of the same order"
            waiting += [Sent(delivery, held_by=first, note=note) for delivery in lanes.pop((subscription_id, order_id))]
    return list(lanes.values()), waiting


def _prepared(delivery: Delivery, now: datetime, started: float) -> Sent:
    """The delivery's signed request; an unwritable document is a response already (not sent)."""
    try:
        request = _request(delivery, now)
    except ValueError as exc:
        unwritable = Response(error=f"the document cannot be written: {exc}", permanent=True)
        return Sent(delivery, Request(body=b"", headers={}, filename=""), unwritable)
    # The exchange ends by the claim plus the timeout: the whole grace is left to record it.
    request.deadline = started + delivery.subscription.timeout_seconds
    return Sent(delivery, request)


def _run_lane(lane: list[Sent]) -> list[Sent]:
    """Send a lane in turn. After a failure the rest waits for it; a delivery whose turn comes with
    less than half its timeout left goes back to the queue untried (the next batch sends it)."""
    for index, sent in enumerate(lane):
        if sent.response is None:
            subscription = sent.delivery.subscription
            if sent.request.deadline - time.monotonic() < subscription.timeout_seconds / 2:
                for later in lane[index:]:
                    later.request = later.response = None
                return lane
            sent.response = _transport(subscription)(subscription, sent.request)
            sent.response.finished = time.monotonic()
        if not sent.response.ok and index + 1 < len(lane):
            note = f"waiting for delivery #{sent.delivery.pk} of the same order"
            for later in lane[index + 1 :]:
                later.request, later.response, later.held_by, later.note = None, None, sent.delivery.pk, note
            return lane
    return lane


def _request(delivery: Delivery, now: datetime) -> Request:
    body, content_type, filename = render(delivery)
    key = str(delivery.idempotency_key)
    headers = {
        "Content-Type": content_type,
        "User-Agent": USER_AGENT,
        **signed_headers(delivery.subscription, message_id=key, body=body, now=now),
        "Idempotency-Key": key,
        "X-Event-Kind": delivery.kind,
        "X-Delivery-Id": str(delivery.pk),
        "X-Delivery-Attempt": str(delivery.attempts),
    }
    return Request(body=body, headers=headers, filename=filename)


@sensitive_variables()
def signed_headers(subscription: Subscription, *, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers (signed with the current secret, and the previous one during
    its grace period), then ``X-Timestamp`` and ``X-Signature`` if the subscription keeps them.

    ``message_id`` is the same on every attempt: receivers dedupe on ``webhook-id``."""
    timestamp = int(now.timestamp())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_webhooks.signature_header(
            map(standard_webhooks.signing_key, secrets_in_force(subscription, now=now)),
            message_id=message_id,
            timestamp=timestamp,
            body=body,
        ),
    }
    if subscription.legacy_signature:
        headers["X-Timestamp"] = str(timestamp)
        headers["X-Signature"] = signature_for(subscription.secret, str(timestamp), body)
    return headers


def secrets_in_force(subscription: Subscription, *, now: datetime) -> list[str]:
    """The secrets deliveries are signed with at ``now``: the current one, and the previous one
    until its grace period ends."""
    until = subscription.secret_previous_until
    if subscription.secret_previous and until is not None and now < until:
        return [subscription.secret, subscription.secret_previous]
    return [subscription.secret]


def render(delivery: Delivery) -> tuple[bytes, str, str]:
    """The bytes a delivery carries, its content type and its file name in an outbox folder."""
    key = delivery.idempotency_key.hex
    if delivery.document_id:
        document = delivery.document
        name = f"{document.kind}-{document.control_number or key}-{key}"
        if document.kind == "CONTRL":
            return document.body.encode(), "application/EDIFACT", f"{name}.edi"
        return document.body.encode(), "application/edi-x12", f"{name}.x12"
    event = delivery.event
    if delivery.subscription.format == Subscription.Format.X12:
        from apps.outbound.x12_out import invoice_810

        body = invoice_810(event.payload, partner=delivery.subscription.partner, key=delivery.idempotency_key)
        return body.encode(), "application/edi-x12", f"810-{key}.x12"
    return event.canonical_json, "application/json", f"{event.kind.replace('.', '-')}-{key}.json"


def _transport(subscription: Subscription) -> Callable[[Subscription, Request], Response]:
    return _post if subscription.target_url else _write_to_outbox


def _post(subscription: Subscription, request: Request) -> Response:
    """POST through the network guard: internal addresses refused at connect time, no redirect
    followed, at most ``OUTBOUND_MAX_RESPONSE_BYTES`` of the reply read, and the whole exchange
    over by the request's deadline, so an attempt always ends (and is recorded) before its claim
    expires and the sweep could hand the delivery out a second time."""
    started = time.monotonic()
    if host_error := allowed_hosts_error(subscription.target_url):  # the list changed since it was saved
        return Response(error=host_error, permanent=True)
    try:
        reply = network.request(
            "POST",
            subscription.target_url,
            headers=request.headers,
            body=request.body,
            timeout=max(request.deadline - started, 0.001),
            max_bytes=settings.OUTBOUND_MAX_RESPONSE_BYTES,
        )
    except network.TimedOut:
        return Response(error=f"timed out after {subscription.timeout_seconds} s", duration_ms=_since(started))
    except network.TargetRefused as exc:
        return Response(error=f"not sent: {exc}", permanent=True, duration_ms=_since(started))
    except network.ConnectFailed as exc:
        return Response(error=f"could not connect: {exc}", duration_ms=_since(started))
    except network.RequestFailed as exc:
        return Response(error=str(exc), duration_ms=_since(started))
    response = Response(
        status_code=reply.status,
        body=reply.body.decode(errors="replace")[:RESPONSE_EXCERPT],
        retry_after=_retry_after(reply.headers),
        duration_ms=_since(started),
    )
    if not response.ok:
        location = reply.headers.get("location")
        response.error = f"HTTP {reply.status}" + (f", redirected to {location} (not followed)" if location else "")
    return response


def outbox_folder(subscription: Subscription) -> Path:
    channel = subscription.channel.code if subscription.channel_id else "outbound"
    return Path(settings.OUTBOX_DIR) / subscription.partner.code / channel


def _write_to_outbox(subscription: Subscription, request: Request) -> Response:
    """Write the document where an SFTP relay picks it up: whole or not at all (rename is atomic)."""
    started = time.monotonic()
    folder = outbox_folder(subscription)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{request.filename}.part"
        partial.write_bytes(request.body)
        partial.replace(folder / request.filename)
    except OSError as exc:
        return Response(error=f"could not write to {folder}: {exc.strerror or exc}", duration_ms=_since(started))
    return Response(status_code=200, body=f"written to {folder / request.filename}", duration_ms=_since(started))


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


RECORDED_FIELDS = (
    "status",
    "attempts",
    "logged_attempts",
    "claimed_until",
    "next_attempt_at",
    "held_by",
    "last_status_code",
    "last_latency_ms",
    "last_error",
    "delivered_at",
    "freshness_ms",
    "dead_at",
)


def _record(results: list[Sent], endpoint: Endpoint, now: datetime) -> list[Outcome]:
    """Record a batch in one transaction: its attempts in one statement, the deliveries' new state
    in another (only those still ours), then the breaker and the deliveries that waited on these."""
    sent_ones = [sent for sent in results if sent.response is not None]
    outcomes = [_outcome(sent, now) for sent in sent_ones]
    for sent in results:
        if sent.response is None:
            _wait(sent, now)
    with transaction.atomic():
        _log_attempts(
            (
                outcome.delivery.pk,
                outcome.delivery.logged_attempts,
                now,
                outcome.response.duration_ms,
                outcome.response.status_code,
                outcome.result,
                outcome.response.error,
                request.headers,
                request.body.decode(errors="replace"),
                outcome.response.body,
            )
            for outcome, request in zip(outcomes, (sent.request for sent in sent_ones), strict=True)
        )
        _write_back([sent.delivery for sent in results])
        _documents_settle(outcomes)
        answers = list({id(outcome.response): outcome.response for outcome in outcomes}.values())  # a group's once
        released = _breaker_record(endpoint, answers, now)
        delivered = [o.delivery.pk for o in outcomes if o.result == "delivered" and o.delivery.subscription.ordered]
        if delivered:
            Delivery.objects.filter(
                held_by__in=delivered, status=Delivery.Status.PENDING, next_attempt_at__gt=now
            ).update(next_attempt_at=now)
        if released:
            _dispatch_on_commit(Delivery.objects.filter(pk__in=released))
    return outcomes


ATTEMPT_FIELDS = (
    "delivery_id",
    "number",
    "started_at",
    "duration_ms",
    "status_code",
    "outcome",
    "error",
    "request_headers",
    "request_body",
    "response_body",
)


def _log_attempts(rows: Iterable[tuple]) -> None:
    """Append attempts (values in ``ATTEMPT_FIELDS`` order) to the log in one statement.

    On PostgreSQL a ``COPY``: an ``INSERT`` of a batch spent longer quoting its bodies and headers
    into the statement than sending the batch took."""
    if connection.vendor != "postgresql":
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(**dict(zip(ATTEMPT_FIELDS, row, strict=True))) for row in rows
        )
        return
    headers = ATTEMPT_FIELDS.index("request_headers")
    columns = ", ".join(
        connection.ops.quote_name(DeliveryAttempt._meta.get_field(name).column) for name in ATTEMPT_FIELDS
    )
    table = connection.ops.quote_name(DeliveryAttempt._meta.db_table)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((*row[:headers], json.dumps(row[headers]), *row[headers + 1 :]))


def _write_back(deliveries: list[Delivery]) -> None:
    """The batch's new state in one statement, for the rows still ours (status sending).

    On PostgreSQL the rows go as one array per column (``unnest``): ``bulk_update`` writes a CASE
    per field and row, whose building took longer than sending the batch."""
    ours = Delivery.objects.filter(status=Delivery.Status.SENDING)
    if connection.vendor != "postgresql":
        ours.bulk_update(deliveries, RECORDED_FIELDS)
        return
    database = connections[ours.db]  # once: each use of the ``connection`` proxy looks it up again
    fields = [Delivery._meta.pk, *(Delivery._meta.get_field(name) for name in RECORDED_FIELDS)]
    # The values are already what psycopg sends (ints, strings, aware datetimes, None): read as one
    # tuple a delivery and turned into a list a column, with no call per value.
    rows = map(attrgetter(*(field.attname for field in fields)), deliveries)
    arrays = [list(column) for column in zip(*rows, strict=True)]
    names = [database.ops.quote_name(field.column) for field in fields]
    sql = (
        # Names and types come from the model, every value is a parameter.
        "UPDATE {table} AS d SET {sets} FROM unnest({arrays}) AS v({names}) WHERE d.id = v.id AND d.status = %s".format(  # noqa: S608
            table=database.ops.quote_name(Delivery._meta.db_table),
            sets=", ".join(f"{name} = v.{name}" for name in names[1:]),
            arrays=", ".join(f"%s::{field.db_type(database)}[]" for field in fields),
            names=", ".join(names),
        )
    )
    with database.cursor() as cursor:
        cursor.execute(sql, [*arrays, Delivery.Status.SENDING])


def _outcome(sent: Sent, now: datetime) -> Outcome:
    delivery, response = sent.delivery, sent.response
    if response.ok:
        result = "delivered"
    elif response.retryable and delivery.attempts < delivery.subscription.max_attempts:
        result = "retry"
    else:
        result = "dead"
    delivery.claimed_until = None
    delivery.last_status_code = response.status_code
    delivery.last_latency_ms = response.duration_ms
    delivery.last_error = _reason(response, delivery, result)
    if result == "delivered":
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
            Delivery.Status.DELIVERED,
            timezone.now(),
            None,
        )
        delivery.freshness_ms = max(int((delivery.delivered_at - delivery.created_at).total_seconds() * 1000), 0)
    elif result == "retry":
        delivery.status = Delivery.Status.PENDING
        delivery.next_attempt_at = now + backoff(delivery.attempts, response.retry_after)
    else:
        delivery.status, delivery.dead_at, delivery.next_attempt_at = Delivery.Status.DEAD, timezone.now(), None
    return Outcome(delivery=delivery, response=response, result=result)


def _wait(sent: Sent, now: datetime) -> None:
    """A delivery given back untried: pending, its attempt not counted; one waiting for an earlier
    delivery of its order looks again after ``ORDER_RECHECK`` at the latest."""
    delivery = sent.delivery
    delivery.status, delivery.claimed_until = Delivery.Status.PENDING, None
    delivery.attempts -= 1
    delivery.logged_attempts -= 1
    delivery.held_by_id = sent.held_by
    if sent.held_by is None:
        delivery.next_attempt_at = now
    else:
        delivery.next_attempt_at, delivery.last_error = now + ORDER_RECHECK, sent.note


def _documents_settle(outcomes: list[Outcome]) -> None:
    """Acknowledgment documents delivered or dead say so."""
    for result, status in (("delivered", OutboundMessage.Status.SENT), ("dead", OutboundMessage.Status.FAILED)):
        documents = [o.delivery.document_id for o in outcomes if o.result == result and o.delivery.document_id]
        if documents:
            OutboundMessage.objects.filter(pk__in=documents).update(status=status)


def _breaker_record(endpoint: Endpoint, responses: list[Response], now: datetime) -> list[int]:
    """Tell the breaker how the batch went, in the order the answers came: an answer closes it (the
    failures before it do not count), the failures after the last answer count. Returns the
    deliveries released by a closing breaker."""
    answered = [response.status_code is not None and not response.retryable for response in responses]
    last_answer = max((r.finished for r, ok in zip(responses, answered, strict=True) if ok), default=float("-inf"))
    failures = sorted(
        (
            r
            for r, ok in zip(responses, answered, strict=True)
            if not ok and not r.permanent and r.finished > last_answer
        ),
        key=lambda response: response.finished,
    )
    released = breaker_succeeded(endpoint=endpoint, now=now) if any(answered) else []
    if failures:
        breaker_failed(endpoint_id=endpoint.pk, now=now, error=failures[-1].error, count=len(failures))
    return released


def _reason(response: Response, delivery: Delivery, result: str) -> str:
    if result == "delivered":
        return ""
    reason = response.error or f"HTTP {response.status_code}"
    if response.permanent:
        return reason
    if result == "dead" and response.retryable:
        return f"gave up after {delivery.attempts} attempts: {reason}"
    if result == "dead":
        return f"the receiver refused it: {reason}"
    return reason


def backoff(attempt: int, retry_after: float | None = None) -> timedelta:
    """Exponential, capped, with jitter (half fixed, half random) so retries do not stampede."""
    cap = settings.OUTBOUND_RETRY_MAX_SECONDS
    delay = min(cap, settings.OUTBOUND_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not a secret
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return timedelta(seconds=delay)


# --- the circuit breaker, per endpoint ------------------------------------------------------------


def endpoint_key(subscription: Subscription) -> str:
    if subscription.target_url:
        parts = urlsplit(subscription.target_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
    return f"folder:{outbox_folder(subscription)}"


def endpoint_of(subscription: Subscription) -> Endpoint:
    """The subscription's endpoint (created on first use, followed when the target changes)."""
    key = endpoint_key(subscription)
    if subscription.endpoint_id and subscription.endpoint.key == key:
        return subscription.endpoint
    endpoint, _ = Endpoint.objects.get_or_create(key=key)
    Subscription.objects.filter(pk=subscription.pk).update(endpoint=endpoint)
    subscription.endpoint = endpoint
    return endpoint


@dataclass
class Admission:
    admitted: bool
    retry_at: datetime


def breaker_admit(*, endpoint: Endpoint, now: datetime) -> Admission:
    """May a delivery go to this endpoint now? An open breaker lets one probe through when due.

    ``endpoint`` is as read with the delivery: a closed breaker admits without another query (one
    that opened since lets this delivery through, as it would have a moment earlier)."""
    if endpoint.state == Endpoint.State.CLOSED:
        return Admission(True, now)
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        if endpoint.state == Endpoint.State.CLOSED:
            return Admission(True, now)
        if endpoint.state == Endpoint.State.OPEN and endpoint.retry_at and now < endpoint.retry_at:
            return Admission(False, endpoint.retry_at)
        if endpoint.state == Endpoint.State.HALF_OPEN and not _probe_stale(endpoint, now):
            return Admission(False, now + _cooldown(endpoint.trips))
        endpoint.state, endpoint.probe_started_at = Endpoint.State.HALF_OPEN, now
        endpoint.save(update_fields=["state", "probe_started_at", "updated_at"])
        return Admission(True, now)


def breaker_succeeded(*, endpoint: Endpoint, now: datetime) -> list[int]:
    """The endpoint answered: close its breaker; deliveries that waited on it are due now.

    ``endpoint`` is as last read: closed without failures, there is nothing to reset and no query
    (a failure counted since keeps its count, as if this answer had come a moment earlier)."""
    if endpoint.state == Endpoint.State.CLOSED and not endpoint.failures:
        return []
    closed = Endpoint.objects.filter(pk=endpoint.pk).exclude(state=Endpoint.State.CLOSED, failures=0)
    was_open = closed.exclude(state=Endpoint.State.CLOSED).exists()
    closed.update(state=Endpoint.State.CLOSED, failures=0, trips=0, probe_started_at=None, retry_at=None)
    if not was_open:
        return []
    waiting = Delivery.objects.filter(
        subscription__endpoint_id=endpoint.pk, status=Delivery.Status.PENDING, next_attempt_at__gt=now
    )
    ids = list(waiting.values_list("pk", flat=True)[:SWEEP_BATCH])
    Delivery.objects.filter(pk__in=ids).update(next_attempt_at=now)
    return ids


def breaker_failed(*, endpoint_id: int, now: datetime, error: str, count: int = 1) -> None:
    """Count ``count`` failures; open the breaker at the threshold, or again when the probe failed."""
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint_id)
    endpoint.failures += count
    endpoint.last_error = error[:2000]
    probing = endpoint.state == Endpoint.State.HALF_OPEN
    if probing or (
        endpoint.state == Endpoint.State.CLOSED and endpoint.failures >= settings.OUTBOUND_BREAKER_THRESHOLD
    ):
        endpoint.trips += 1
        endpoint.state = Endpoint.State.OPEN
        endpoint.opened_at = now
        endpoint.retry_at = now + _cooldown(endpoint.trips)
        endpoint.probe_started_at = None
    endpoint.save()


def _cooldown(trips: int) -> timedelta:
    seconds = settings.OUTBOUND_BREAKER_COOLDOWN_SECONDS * 2 ** max(trips - 1, 0)
    return timedelta(seconds=min(seconds, settings.OUTBOUND_RETRY_MAX_SECONDS))


def _probe_stale(endpoint: Endpoint, now: datetime) -> bool:
    """The probe's sender has had its longest timeout and the grace: presumed dead."""
    if endpoint.probe_started_at is None:
        return True
    longest = max(endpoint.subscriptions.values_list("timeout_seconds", flat=True), default=10)
    return endpoint.probe_started_at + timedelta(seconds=longest + settings.OUTBOUND_CLAIM_GRACE_SECONDS) < now


def endpoint_close(*, endpoint_id: int) -> int:
    """Someone closes a breaker by hand (the receiver is back): what waited is sent now."""
    now = timezone.now()
    with transaction.atomic():
        released = breaker_succeeded(endpoint=Endpoint.objects.get(pk=endpoint_id), now=now)
        _dispatch_on_commit(Delivery.objects.filter(pk__in=released))
    return len(released)


def endpoint_concurrency_set(*, endpoint_id: int, max_in_flight: int) -> None:
    """How many requests an endpoint takes at once, from the next batch its sender claims. Writes
    that field alone: the breaker's state is the senders' to write."""
    if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
        raise ValueError(f"max_in_flight must be from 1 to {MAX_IN_FLIGHT}")
    Endpoint.objects.filter(pk=endpoint_id).update(max_in_flight=max_in_flight, updated_at=timezone.now())


# --- subscriptions ---------------------------------------------------------------------------------


def subscription_save(*, subscription: Subscription | None, data: dict[str, Any]) -> Subscription:
    """Create (``subscription=None``) or change a subscription from validated input; its endpoint
    follows its target. ``data`` holds resolved objects (partner, channel, customers)."""
    data = dict(data)
    customers = data.pop("customers", None)
    subscription = subscription if subscription is not None else Subscription()
    with transaction.atomic():
        for name, value in data.items():
            setattr(subscription, name, value)
        subscription.save()
        if customers is not None:
            subscription.customers.set(customers)
        endpoint_of(subscription)
    return subscription


@sensitive_variables()
def subscription_secret_rotate(*, subscription: Subscription, secret: str = "", now: datetime | None = None) -> str:
    """A new signing secret (``secret`` when the receiver chose one, else a generated one), in
    force from the next attempt; returns it. Raises ValueError for a malformed ``whsec_`` secret.

    For ``SECRET_ROTATION_GRACE_SECONDS`` afterwards, ``webhook-signature`` carries a signature
    with the old secret too, so a receiver switches whenever it likes within that time; a second
    rotation within it ends the first one's grace. ``X-Signature`` holds a single signature: it
    changes to the new secret at once.
    """
    secret = secret or new_secret()
    standard_webhooks.signing_key(secret)
    now = now or timezone.now()
    with transaction.atomic():
        current = Subscription.objects.select_for_update().values_list("secret", flat=True).get(pk=subscription.pk)
        kept = current if current != secret else ""
        changes = {
            "secret": secret,
            "secret_rotated_at": now,
            "secret_previous": kept,
            "secret_previous_until": now + rotation_grace() if kept else None,
        }
        Subscription.objects.filter(pk=subscription.pk).update(**changes, updated_at=now)
    for name, value in changes.items():
        setattr(subscription, name, value)
    return secret


# --- replay, sweep, dispatch ------------------------------------------------------------------------


def deliveries_replay(*, deliveries: QuerySet[Delivery] | Iterable[int], actor: AbstractBaseUser | None = None) -> int:
    """Send dead letters again from a fresh set of attempts; returns how many were replayed."""
    ids = deliveries.values_list("pk", flat=True) if isinstance(deliveries, QuerySet) else list(deliveries)
    with transaction.atomic():
        dead = Delivery.objects.filter(pk__in=ids, status=Delivery.Status.DEAD)
        replayed = list(dead.values_list("pk", "document_id"))
        dead.update(
            status=Delivery.Status.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            dead_at=None,
            last_error=f"replayed by {actor.get_username()}" if actor else "replayed",
        )
        documents = [document for _, document in replayed if document]
        OutboundMessage.objects.filter(pk__in=documents).update(status=OutboundMessage.Status.PENDING)
        _dispatch_on_commit(Delivery.objects.filter(pk__in=[pk for pk, _ in replayed]))
    return len(replayed)


@dataclass
class Sweep:
    recovered: int
    dispatched: int


def deliveries_sweep(*, now: datetime | None = None) -> Sweep:
    """Periodic: take back deliveries whose sender died, and send what is due."""
    now = now or timezone.now()
    with transaction.atomic():
        recovered = Delivery.objects.filter(status=Delivery.Status.SENDING, claimed_until__lt=now).update(
            status=Delivery.Status.PENDING,
            claimed_until=None,
            next_attempt_at=now,
            last_error="the sender stopped before it finished; sending again",
        )
        due = Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=now, subscription__active=True
        ).order_by("next_attempt_at", "pk")[:SWEEP_BATCH]
        dispatched = _dispatch_on_commit(due)
    return Sweep(recovered=recovered, dispatched=dispatched)


@dataclass
class Pruned:
    deliveries: int
    events: int


def deliveries_prune(*, now: datetime | None = None, batch: int = PRUNE_BATCH) -> Pruned:
    """Daily: forget deliveries delivered more than ``OUTBOUND_RETENTION_DAYS`` ago (their attempt
    log with them) and the events no delivery refers to any more. Dead letters and deliveries still
    on their way are kept whatever their age: they need a person or a receiver first.

    Deletes in batches, each its own transaction, so a large backlog never holds long locks."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.OUTBOUND_RETENTION_DAYS)
    delivered = Delivery.objects.filter(status=Delivery.Status.DELIVERED, delivered_at__lt=cutoff)
    orphaned = OutboundEvent.objects.filter(published_at__lt=cutoff).exclude(
        Exists(Delivery.objects.filter(event=OuterRef("pk")))
    )
    return Pruned(deliveries=_delete_in_batches(delivered, batch), events=_delete_in_batches(orphaned, batch))


def _delete_in_batches(queryset: QuerySet, batch: int) -> int:
    deleted = 0
    while ids := list(queryset.values_list("pk", flat=True)[:batch]):
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted


def _dispatch_on_commit(deliveries: QuerySet[Delivery]) -> int:
    """Queue sending for after commit: one drain per endpoint the deliveries go to, however many
    they are (a drain sends everything due there). Returns how many deliveries were dispatched."""
    from apps.outbound.tasks import endpoint_drain_task

    rows = list(deliveries.values_list("subscription_id", "subscription__endpoint_id"))
    endpoints = {endpoint for _, endpoint in rows if endpoint is not None}
    unplaced = {subscription for subscription, endpoint in rows if endpoint is None}
    for subscription in Subscription.objects.filter(pk__in=unplaced).select_related("partner", "channel"):
        endpoints.add(endpoint_of(subscription).pk)
    if endpoints:
        transaction.on_commit(
            lambda: [endpoint_drain_task.apply_async(args=[pk], queue="outbound") for pk in sorted(endpoints)]
        )
    return len(rows)
