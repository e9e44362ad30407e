"""Publishing business events to subscribers, reliably.

``events_publish`` runs inside ``apply_events``' transaction (the transactional outbox): the
milestone, its ``OutboundEvent`` and one ``Delivery`` per matching subscription commit together.
``delivery_send`` then sends one delivery: it claims it by a conditional update (a redelivered
task is harmless), asks the endpoint's circuit breaker, signs and sends, and records the attempt.
A sender killed mid-delivery leaves the claim to expire; ``deliveries_sweep`` hands it out again,
and the receiver dedupes on ``Idempotency-Key``: at-least-once, never lost.
"""

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.ingest.models import OutboundMessage
from apps.ingest.webhooks import signature_for
from apps.outbound.models import Delivery, DeliveryAttempt, Endpoint, OutboundEvent, Subscription, new_secret
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
DISPATCH_CHUNK = 50
RETRYABLE_STATUS = frozenset({408, 425, 429})
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


def delivery_send(delivery_id: int, *, now: datetime | None = None) -> Outcome | None:
    """Send one delivery if it is due and nothing holds it back. Returns None when it was not sent
    (not due, taken by another sender, waiting for an earlier event of its order, breaker open)."""
    claimed, now = time.monotonic(), now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    subscription = delivery.subscription
    earlier = _earlier_undelivered(delivery)
    if earlier:
        _unclaim(
            delivery,
            retry_at=now + ORDER_RECHECK,
            note=f"waiting for delivery #{earlier} of the same order",
            held_by=earlier,
        )
        return None
    endpoint = endpoint_of(subscription)
    admission = breaker_admit(endpoint=endpoint, now=now)
    if not admission.admitted:
        _unclaim(delivery, retry_at=admission.retry_at, note="circuit breaker open")
        return None
    Delivery.objects.filter(pk=delivery.pk).update(attempts=F("attempts") + 1, logged_attempts=F("logged_attempts") + 1)
    delivery.attempts += 1
    delivery.logged_attempts += 1
    try:
        request = _request(delivery, now)
    except ValueError as exc:
        unwritable = Response(error=f"the document cannot be written: {exc}", permanent=True)
        return _record(delivery, Request(body=b"", headers={}, filename=""), unwritable, endpoint, now)
    request.deadline = claimed + subscription.timeout_seconds
    response = _transport(subscription)(subscription, request)
    return _record(delivery, request, response, endpoint, now)


def _claim(delivery_id: int, now: datetime) -> Delivery | None:
    delivery = (
        Delivery.objects.select_related(
            "subscription__partner", "subscription__channel", "subscription__endpoint", "event", "document"
        )
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or not delivery.subscription.active:
        return None
    hold = timedelta(seconds=delivery.subscription.timeout_seconds + settings.OUTBOUND_CLAIM_GRACE_SECONDS)
    # One table only: a condition on a joined table makes Django write "id IN (SELECT ...)", whose
    # status check PostgreSQL does not re-check on a row another claim changed meanwhile, so two
    # concurrent claims could both win and send the delivery twice at once.
    claimed = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now).update(
        status=Delivery.Status.SENDING, claimed_until=now + hold, held_by=None
    )
    if not claimed:
        return None
    delivery.status = Delivery.Status.SENDING
    return delivery


def _unclaim(delivery: Delivery, *, retry_at: datetime, note: str, held_by: int | None = None) -> None:
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.PENDING, claimed_until=None, next_attempt_at=retry_at, last_error=note, held_by=held_by
    )


def _earlier_undelivered(delivery: Delivery) -> int | None:
    if not delivery.subscription.ordered or delivery.order_id is None:
        return None
    return (
        Delivery.objects.filter(
            subscription_id=delivery.subscription_id, order_id=delivery.order_id, pk__lt=delivery.pk
        )
        .exclude(status=Delivery.Status.DELIVERED)
        .values_list("pk", flat=True)
        .first()
    )


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
    body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode()
    return body, "application/json", f"{event.kind.replace('.', '-')}-{key}.json"


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


def _record(delivery: Delivery, request: Request, response: Response, endpoint: Endpoint, now: datetime) -> Outcome:
    subscription = delivery.subscription
    if response.ok:
        result = "delivered"
    elif response.retryable and delivery.attempts < subscription.max_attempts:
        result = "retry"
    else:
        result = "dead"
    outcome = Outcome(delivery=delivery, response=response, result=result)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.logged_attempts,
            started_at=now,
            duration_ms=response.duration_ms,
            status_code=response.status_code,
            outcome=result,
            error=response.error,
            request_headers=request.headers,
            request_body=request.body.decode(errors="replace"),
            response_body=response.body,
        )
        fields = {
            "claimed_until": None,
            "last_status_code": response.status_code,
            "last_latency_ms": response.duration_ms,
            "last_error": _reason(response, delivery, result),
        }
        if result == "delivered":
            fields |= {"status": Delivery.Status.DELIVERED, "delivered_at": timezone.now(), "next_attempt_at": None}
        elif result == "retry":
            fields |= {
                "status": Delivery.Status.PENDING,
                "next_attempt_at": now + backoff(delivery.attempts, response.retry_after),
            }
        else:
            fields |= {"status": Delivery.Status.DEAD, "dead_at": timezone.now(), "next_attempt_at": None}
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(**fields)
        if delivery.document_id and result != "retry":
            status = OutboundMessage.Status.SENT if result == "delivered" else OutboundMessage.Status.FAILED
            OutboundMessage.objects.filter(pk=delivery.document_id).update(status=status)
        released = []
        if response.status_code is not None and not response.retryable:
            released = breaker_succeeded(endpoint=endpoint, now=now)
        elif not response.permanent:
            breaker_failed(endpoint_id=endpoint.pk, now=now, error=response.error)
        if result == "delivered" and subscription.ordered and delivery.order_id:
            released += _release_next_of_order(delivery, now)
        _dispatch_on_commit(Delivery.objects.filter(pk__in=released))
    return outcome


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


def _release_next_of_order(delivery: Delivery, now: datetime) -> list[int]:
    following = (
        Delivery.objects.filter(
            subscription_id=delivery.subscription_id,
            order_id=delivery.order_id,
            pk__gt=delivery.pk,
            status=Delivery.Status.PENDING,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following is None:
        return []
    Delivery.objects.filter(pk=following, next_attempt_at__gt=now).update(next_attempt_at=now)
    return [following]


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


def breaker_failed(*, endpoint_id: int, now: datetime, error: str) -> None:
    """Count a failure; open the breaker at the threshold, or again when the probe failed."""
    endpoint = Endpoint.objects.select_for_update().get(pk=endpoint_id)
    endpoint.failures += 1
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
    """Queue sending for after commit: a task per subscription and chunk, so a slow receiver
    only delays its own deliveries and a burst of events is not a burst of tasks."""
    from apps.outbound.tasks import deliver_task

    by_subscription: dict[int, list[int]] = defaultdict(list)
    for subscription_id, pk in deliveries.values_list("subscription_id", "pk"):
        by_subscription[subscription_id].append(pk)
    chunks = [
        sorted(pks)[start : start + DISPATCH_CHUNK]
        for pks in by_subscription.values()
        for start in range(0, len(pks), DISPATCH_CHUNK)
    ]
    if chunks:
        transaction.on_commit(lambda: [deliver_task.apply_async(args=[chunk], queue="outbound") for chunk in chunks])
    return sum(map(len, chunks))
