"""Shipments as the model reads them: their lane and carrier milestones, each with the moment it
became known, so a prediction for time t can be made from what was known at t and nothing after.

Three queries for any number of shipments: the shipments with their carrier and warehouse, the
orders they carry, and their carrier milestones.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from apps.predictions.estimator import Anchor, Lane, Samples, Situation, Stage, record_delivery
from apps.timeline.events import EventKind
from apps.timeline.models import Milestone, Shipment

K = EventKind
TRACKED = (
    K.SHIPMENT_MANIFESTED,
    K.SHIPMENT_PICKED_UP,
    K.SHIPMENT_IN_TRANSIT,
    K.SHIPMENT_OUT_FOR_DELIVERY,
    K.SHIPMENT_DELIVERED,
    K.SHIPMENT_POD_RECEIVED,
)
# A proof of delivery without a delivery scan stands for the delivery, as on the timeline.
DELIVERED = (K.SHIPMENT_DELIVERED, K.SHIPMENT_POD_RECEIVED)
# A milestone stored more than this after it happened came in a bulk load of history: it is taken
# as known when it happened (the receive time of a real feed is within hours of the event).
BULK_LAG = timedelta(days=2)


@dataclass(frozen=True)
class Fact:
    """One carrier milestone: what happened, when, and when we knew it."""

    kind: str
    occurred_at: datetime
    known_at: datetime
    place: str = ""
    estimate: datetime | None = None
    service: str = ""
    assumed: bool = False  # known_at is the event time: stored in a bulk load

    def known_by(self, moment: datetime) -> bool:
        return self.occurred_at <= moment and self.known_at <= moment


@dataclass
class ShipmentHistory:
    id: int
    number: str
    carrier_id: int | None
    carrier: str
    warehouse: str
    destination: str
    promised_at: datetime | None
    facts: list[Fact]

    def lane(self, moment: datetime | None = None) -> Lane:
        """The lane as known at ``moment`` (origin from the ship notice's location)."""
        known = [f for f in self.facts if moment is None or f.known_by(moment)]
        origin = next((f.place for f in known if f.kind == K.SHIPMENT_MANIFESTED and f.place), "")
        origin = origin or next((f.place for f in known if f.kind == K.SHIPMENT_PICKED_UP and f.place), "")
        service = next((f.service for f in known if f.service), "")
        return Lane(self.carrier_id, self.carrier, origin or self.warehouse, self.destination, service)

    def delivery(self) -> Fact | None:
        delivered = next((f for f in self.facts if f.kind == K.SHIPMENT_DELIVERED), None)
        return delivered or next((f for f in self.facts if f.kind == K.SHIPMENT_POD_RECEIVED), None)

    def anchors(self, delivery: Fact) -> dict[str, datetime | None]:
        """Where this delivery's transit is counted from, as known when the delivery was: the
        pickup (or first scan) and the first time out for delivery (a failed attempt and a second
        round are part of what follows it)."""
        known = [f for f in self.facts if f.known_by(delivery.known_at) and f.occurred_at <= delivery.occurred_at]
        pickup = _first(known, K.SHIPMENT_PICKED_UP) or _first(known, K.SHIPMENT_IN_TRANSIT)
        out = [f.occurred_at for f in known if f.kind == K.SHIPMENT_OUT_FOR_DELIVERY]
        return {Anchor.PICKUP: pickup, Anchor.OUT_FOR_DELIVERY: min(out, default=None)}

    def situation(self, as_of: datetime) -> Situation | None:
        """What was known at ``as_of``, or None when the delivery was known by then."""
        known = [f for f in self.facts if f.known_by(as_of)]
        if any(f.kind in DELIVERED for f in known):
            return None
        scans = [f for f in known if f.kind == K.SHIPMENT_IN_TRANSIT]
        outs = [f.occurred_at for f in known if f.kind == K.SHIPMENT_OUT_FOR_DELIVERY]
        pickup = _first(known, K.SHIPMENT_PICKED_UP) or (scans[0].occurred_at if scans else None)
        estimates = [f for f in known if f.estimate is not None]
        last_scan = scans[-1] if scans else None
        return Situation(
            shipment_id=self.id,
            lane=self.lane(as_of),
            as_of=as_of,
            stage=_stage(pickup, scans, outs),
            picked_up_at=pickup,
            out_for_delivery_at=min(outs, default=None),
            last_scan_at=last_scan.occurred_at if last_scan else None,
            last_scan_place=last_scan.place if last_scan else "",
            promised_at=self.promised_at,
            carrier_estimate_at=estimates[-1].estimate if estimates else None,
        )


def learn(profiles: dict[tuple[str, str], Samples], history: ShipmentHistory, delivery: Fact) -> None:
    """Add one delivery, as known when it was reported, to the groups of its lane."""
    lane = history.lane(delivery.known_at)
    record_delivery(profiles, lane, delivery.occurred_at, history.anchors(delivery))


def _first(facts: list[Fact], kind: str) -> datetime | None:
    return next((f.occurred_at for f in facts if f.kind == kind), None)


def _stage(pickup: datetime | None, scans: list[Fact], outs: list[datetime]) -> str | None:
    if outs:
        return Stage.OUT_FOR_DELIVERY
    if scans:
        return Stage.IN_TRANSIT
    return Stage.PICKED_UP if pickup else None


def _place(location: dict | None) -> str:
    if not isinstance(location, dict):
        return ""
    return str(location.get("city") or location.get("name") or "")[:100]


def shipment_histories(shipments: QuerySet[Shipment]) -> list[ShipmentHistory]:
    """The histories of ``shipments`` (any filter), in three queries."""
    rows = list(shipments.values("id", "number", "carrier_id", "carrier__name", "carrier__code", "warehouse__code"))
    ids = [row["id"] for row in rows]
    orders = _orders_by_shipment(ids)
    facts = _facts_by_shipment(ids)
    return [
        ShipmentHistory(
            id=row["id"],
            number=row["number"],
            carrier_id=row["carrier_id"],
            carrier=row["carrier__name"] or row["carrier__code"] or "unknown carrier",
            warehouse=row["warehouse__code"] or "",
            destination=orders.get(row["id"], ("", None))[0],
            promised_at=orders.get(row["id"], ("", None))[1],
            facts=facts.get(row["id"], []),
        )
        for row in rows
    ]


def _orders_by_shipment(ids: list[int]) -> dict[int, tuple[str, datetime | None]]:
    """Per shipment: the region of its first order and the earliest promise of the orders it carries."""
    links = (
        Shipment.orders.through.objects.filter(shipment_id__any=ids)
        .order_by("shipment_id", "order_id")
        .values_list("shipment_id", "order__region", "order__promised_at")
    )
    found: dict[int, tuple[str, datetime | None]] = {}
    for shipment_id, region, promised in links:
        first_region, earliest = found.get(shipment_id, (region or "", None))
        if promised is not None and (earliest is None or promised < earliest):
            earliest = promised
        found[shipment_id] = (first_region, earliest)
    return found


def _facts_by_shipment(ids: list[int]) -> dict[int, list[Fact]]:
    milestones = (
        Milestone.objects.filter(shipment_id__any=ids)
        .filter(Q(kind__in=TRACKED) | Q(estimated_delivery_at__isnull=False))
        .order_by("shipment_id", "occurred_at", "event_id")
        .values_list(
            "shipment_id",
            "kind",
            "occurred_at",
            "recorded_at",
            "location",
            "estimated_delivery_at",
            "payload__attributes__service_level",
        )
    )
    facts: dict[int, list[Fact]] = {}
    for shipment_id, kind, occurred, recorded, location, estimate, service in milestones:
        assumed = recorded - occurred > BULK_LAG
        facts.setdefault(shipment_id, []).append(
            Fact(
                kind=kind,
                occurred_at=occurred,
                known_at=occurred if assumed else max(recorded, occurred),
                place=_place(location),
                estimate=estimate,
                service=str(service or "")[:40],
                assumed=assumed,
            )
        )
    return facts
