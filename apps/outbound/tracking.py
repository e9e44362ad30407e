"""Customer tracking links: a public, read-only view of one order, reached by an unguessable token.

A link works until it expires or is revoked; to a visitor, an unknown, an expired and a revoked
token look exactly the same. The public page shows one order and its shipments, and only
customer-meaningful milestones: never sources, notes, freight, invoice holds or cases.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from apps.outbound.models import TrackingLink
from apps.timeline.events import EventKind as K
from apps.timeline.models import Milestone, Order, ShipmentStatus

TOKEN_MAX_LENGTH = 64
MAX_DAYS = 365

# The milestones a customer sees, in their words; every other kind stays inside.
PUBLIC_LABELS: dict[str, str] = {
    K.ORDER_CREATED: "Order received",
    K.ORDER_RELEASED: "Released to the warehouse",
    K.ORDER_PICKED: "Picked",
    K.ORDER_PACKED: "Packed",
    K.SHIPMENT_MANIFESTED: "Shipped",
    K.SHIPMENT_TRACKING_ASSIGNED: "Tracking number assigned",
    K.SHIPMENT_PICKED_UP: "Picked up by the carrier",
    K.SHIPMENT_IN_TRANSIT: "In transit",
    K.SHIPMENT_OUT_FOR_DELIVERY: "Out for delivery",
    K.SHIPMENT_DELAYED: "Delayed",
    K.SHIPMENT_DELIVERY_ATTEMPTED: "Delivery attempted",
    K.SHIPMENT_DELIVERED: "Delivered",
    K.INVOICE_GENERATED: "Invoice issued",
}
# Only a carrier's reason for a delay or a failed attempt is shown; other attributes are internal.
REASON_KINDS = frozenset({K.SHIPMENT_DELAYED, K.SHIPMENT_DELIVERY_ATTEMPTED})
SHIPMENT_LABELS = {
    ShipmentStatus.MANIFESTED: "Shipped",
    ShipmentStatus.TRACKING_ASSIGNED: "Shipped",
    ShipmentStatus.PICKED_UP: "Picked up by the carrier",
    ShipmentStatus.IN_TRANSIT: "In transit",
    ShipmentStatus.OUT_FOR_DELIVERY: "Out for delivery",
    ShipmentStatus.DELIVERY_ATTEMPTED: "Delivery attempted",
    ShipmentStatus.DELIVERED: "Delivered",
    ShipmentStatus.POD_RECEIVED: "Delivered",
}


# --- services -------------------------------------------------------------------------------------


def tracking_link_create(*, order: Order, actor: AbstractBaseUser | None, days: int | None = None) -> TrackingLink:
    """A new link to ``order``, valid ``days`` (default ``TRACKING_LINK_DAYS``) unless revoked."""
    days = settings.TRACKING_LINK_DAYS if days is None else days
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"a tracking link is valid for 1 to {MAX_DAYS} days, not {days}")
    return TrackingLink.objects.create(order=order, created_by=actor, expires_at=timezone.now() + timedelta(days=days))


def tracking_link_revoke(*, link: TrackingLink, actor: AbstractBaseUser | None) -> bool:
    """Revoke ``link`` for good; False when it was revoked already (the first revocation stays)."""
    now = timezone.now()
    revoked = TrackingLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=now, revoked_by=actor)
    if revoked:
        link.revoked_at, link.revoked_by = now, actor
    return bool(revoked)


def tracking_link_viewed(*, link: TrackingLink) -> None:
    TrackingLink.objects.filter(pk=link.pk).update(views=F("views") + 1, last_viewed_at=timezone.now())


def tracking_link_for_order(*, order_id: int, now: datetime | None = None) -> TrackingLink:
    """The link an e-mail carries: the order's newest active link that stays valid for at least half
    of ``TRACKING_LINK_DAYS``, else a new one (created by nobody, valid ``TRACKING_LINK_DAYS``)."""
    now = now or timezone.now()
    keep_until = now + timedelta(days=settings.TRACKING_LINK_DAYS / 2)
    link = (
        TrackingLink.objects.filter(order_id=order_id, revoked_at__isnull=True, expires_at__gte=keep_until)
        .order_by("-created_at", "-id")
        .first()
    )
    if link is None:
        link = TrackingLink.objects.create(
            order_id=order_id, expires_at=now + timedelta(days=settings.TRACKING_LINK_DAYS)
        )
    return link


# --- selectors ------------------------------------------------------------------------------------


def tracking_url(link: TrackingLink) -> str:
    """The public address of a link, as customers receive it."""
    return settings.PUBLIC_BASE_URL + reverse("track", kwargs={"token": link.token})


def tracking_link_resolve(token: str, *, now: datetime | None = None) -> TrackingLink | None:
    """The link (with its order and customer) for ``token``, only while it is neither revoked nor expired."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    now = now or timezone.now()
    return (
        TrackingLink.objects.select_related("order__customer")
        .filter(token=token, revoked_at__isnull=True, expires_at__gt=now)
        .first()
    )


@dataclass(frozen=True)
class LinkRow:
    link: TrackingLink
    url: str


def order_tracking_links(order_id: int) -> list[LinkRow]:
    """Every link of one order, newest first, with who created and revoked it (one query)."""
    links = TrackingLink.objects.filter(order_id=order_id).select_related("created_by", "revoked_by")
    return [LinkRow(link=link, url=tracking_url(link)) for link in links.order_by("-created_at", "-id")]


@dataclass(frozen=True)
class PublicShipment:
    number: str
    carrier: str
    tracking_number: str
    status: str
    estimated_delivery_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class PublicEvent:
    label: str
    occurred_at: datetime
    shipment_number: str
    place: str
    reason: str


@dataclass(frozen=True)
class TrackingPage:
    """What a tracking link shows: plain values only, so a template cannot reach anything else."""

    order_number: str
    stage: str
    stage_label: str
    promised_at: datetime | None
    time_zone: str
    shipments: list[PublicShipment]
    events: list[PublicEvent]


def tracking_page(link: TrackingLink) -> TrackingPage:
    """The public view of the link's order, in two queries (shipments, milestones), newest event first."""
    order = link.order
    shipments = list(order.shipments.select_related("carrier").order_by(F("manifested_at").asc(nulls_last=True), "id"))
    numbers = {shipment.id: shipment.number for shipment in shipments}
    rows = (
        Milestone.objects.filter(Q(order_id=order.id) | Q(shipment_id__in=list(numbers)), kind__in=list(PUBLIC_LABELS))
        .order_by("-occurred_at", "-event_id")
        .values("kind", "occurred_at", "shipment_id", "location", "payload__attributes")
    )
    return TrackingPage(
        order_number=order.number,
        stage=order.stage,
        stage_label=order.get_stage_display(),
        promised_at=order.promised_at,
        time_zone=order.customer.time_zone if order.customer else settings.TIME_ZONE,
        shipments=[
            PublicShipment(
                number=shipment.number,
                carrier=shipment.carrier.name if shipment.carrier else "",
                tracking_number=shipment.tracking_number,
                status=SHIPMENT_LABELS.get(shipment.status, ""),
                estimated_delivery_at=shipment.estimated_delivery_at,
                delivered_at=shipment.delivered_at,
            )
            for shipment in shipments
        ],
        events=[
            PublicEvent(
                label=PUBLIC_LABELS[row["kind"]],
                occurred_at=row["occurred_at"],
                shipment_number=numbers.get(row["shipment_id"], ""),
                place=public_place(row["location"]),
                reason=_reason(row["kind"], row["payload__attributes"]),
            )
            for row in rows
        ],
    )


def public_place(location: dict[str, Any] | None) -> str:
    """City, state and country only: site names ("DC Lyon") are ours, not the customer's."""
    if not isinstance(location, dict):
        return ""
    parts = (location.get(name) for name in ("city", "state", "country"))
    return ", ".join(dict.fromkeys(str(part) for part in parts if part))


def _reason(kind: str, attributes: Any) -> str:
    if kind not in REASON_KINDS or not isinstance(attributes, dict):
        return ""
    return str(attributes.get("reason") or "")[:200]
