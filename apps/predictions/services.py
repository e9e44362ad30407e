"""Writes: the transit profiles the model reads, and the predictions of open shipments."""

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from apps.predictions import backtest
from apps.predictions.estimator import Estimate, Samples, Situation, estimate
from apps.predictions.history import ShipmentHistory, learn, shipment_histories
from apps.predictions.models import BacktestReport, OrderRisk, Prediction, TransitProfile
from apps.timeline.models import Shipment
from apps.timeline.projections import orders_of_shipments

# The deliveries a rebuild learns from: long enough for quiet lanes, short enough to follow change.
PROFILE_WINDOW = timedelta(days=180)
REFRESH_BATCH = 500
REBUILD_BATCH = 2000
LOCK_ID = 0x455441  # any constant; names the profile writer's advisory lock


def profiles_from(
    histories: Iterable[ShipmentHistory], profiles: dict[tuple[str, str], Samples] | None = None
) -> dict[tuple[str, str], Samples]:
    """The groups' samples from delivered shipments, added in the order they were delivered
    (to ``profiles`` when given)."""
    profiles = {} if profiles is None else profiles
    delivered = [(h, h.delivery()) for h in histories]
    for history, delivery in sorted(((h, d) for h, d in delivered if d), key=lambda pair: pair[1].occurred_at):
        learn(profiles, history, delivery)
    return profiles


def profiles_rebuild(*, now: datetime | None = None) -> int:
    """Rebuild every transit profile from the deliveries of the last ``PROFILE_WINDOW``.

    Runs on the periodic task, never per event, reading the deliveries in batches in the order
    they were delivered (memory holds one batch and the profiles); writers take an advisory lock
    so two rebuilds never interleave their delete and insert. Returns the number of profiles written."""
    now = now or timezone.now()
    recent = Shipment.objects.filter(delivered_at__gte=now - PROFILE_WINDOW, delivered_at__lte=now)
    ids = list(recent.order_by("delivered_at", "id").values_list("id", flat=True))
    profiles: dict[tuple[str, str], Samples] = {}
    for start in range(0, len(ids), REBUILD_BATCH):
        profiles_from(shipment_histories(Shipment.objects.filter(id__any=ids[start : start + REBUILD_BATCH])), profiles)
    rows = [
        TransitProfile(key=key, anchor=anchor, samples=samples.rows(), deliveries=samples.count)
        for (key, anchor), samples in profiles.items()
    ]
    with transaction.atomic():
        _lock()
        TransitProfile.objects.all().delete()
        TransitProfile.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_ID])


def _keys(histories: list[ShipmentHistory]) -> list[str]:
    return sorted({key for history in histories for key, _ in history.lane().groups()})


def _profiles_for(histories: list[ShipmentHistory]) -> dict[tuple[str, str], Samples]:
    rows = TransitProfile.objects.filter(key__any=_keys(histories)).values_list("key", "anchor", "samples")
    return {(key, anchor): Samples.of(samples) for key, anchor, samples in rows}


def deliveries_learn(*, shipment_ids: Iterable[int]) -> int:
    """Add the deliveries among ``shipment_ids`` to the profiles of their lanes at once, rather
    than at the next rebuild: a lane that slows down shows in the next prediction.

    A delivery is learnt once: only shipments that still have a prediction (they were open) are
    learnt, and their prediction is deleted in the same transaction, under the profile writers'
    lock. A bounded number of queries for the batch, whatever its size; one when nothing was
    delivered. Returns how many were learnt."""
    with transaction.atomic():
        claimed = list(
            Prediction.objects.select_for_update(of=("self",))
            .filter(shipment_id__any=sorted(set(shipment_ids)), shipment__delivered_at__isnull=False)
            .values_list("shipment_id", flat=True)
        )
        if not claimed:
            return 0
        _lock()
        histories = shipment_histories(Shipment.objects.filter(id__any=claimed))
        stored = {(row.key, row.anchor): row for row in TransitProfile.objects.filter(key__any=_keys(histories))}
        profiles = {place: Samples.of(row.samples) for place, row in stored.items()}
        for history in histories:
            if (delivery := history.delivery()) is not None:
                learn(profiles, history, delivery)
        _save_profiles(profiles, stored)
        Prediction.objects.filter(shipment_id__any=claimed).delete()
        order_risks_refresh(order_ids=orders_of_shipments(claimed))
    return len(claimed)


def _save_profiles(profiles: dict[tuple[str, str], Samples], stored: dict[tuple[str, str], TransitProfile]) -> None:
    new = []
    for (key, anchor), samples in profiles.items():
        row = stored.get((key, anchor)) or TransitProfile(key=key, anchor=anchor)
        row.samples, row.deliveries = samples.rows(), samples.count
        if row.pk is None:
            new.append(row)
    TransitProfile.objects.bulk_update(stored.values(), ["samples", "deliveries"])
    TransitProfile.objects.bulk_create(new)


def predictions_refresh(*, shipment_ids: Iterable[int], now: datetime | None = None) -> int:
    """Predict the shipments on their way among ``shipment_ids`` and drop the predictions of the
    others (not picked up yet, delivered, or gone), in a bounded number of queries whatever the
    batch's size. Returns how many were predicted."""
    now = now or timezone.now()
    ids = sorted(set(shipment_ids))
    open_shipments = Shipment.objects.filter(id__any=ids, delivered_at__isnull=True)
    histories = shipment_histories(open_shipments)
    profiles = _profiles_for(histories)
    rows = []
    for history in histories:
        situation = history.situation(now)
        if situation is not None and situation.stage is not None:  # on its way: picked up, not delivered
            rows.append(_prediction(history.id, estimate(situation, profiles), situation))
    kept = {row.shipment_id for row in rows}
    with transaction.atomic():
        Prediction.objects.filter(shipment_id__any=[i for i in ids if i not in kept]).delete()
        Prediction.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["shipment"],
            update_fields=[f.name for f in Prediction._meta.concrete_fields if f.name not in ("id", "shipment")],
        )
        order_risks_refresh(order_ids=orders_of_shipments(ids))
    return len(rows)


def order_risks_refresh(*, order_ids: Iterable[int]) -> int:
    """Set each order's risk to its riskiest open shipment's (``OrderRisk``), and drop the risk of
    orders with none left: three queries whatever the batch's size. Returns how many have a risk."""
    ids = sorted(set(order_ids))
    links = (
        Shipment.orders.through.objects.filter(order_id__any=ids, shipment__prediction__late_probability__isnull=False)
        .order_by("order_id", "-shipment__prediction__late_probability", "shipment_id")
        .values_list("order_id", "shipment_id", "shipment__prediction__late_probability")
    )
    riskiest: dict[int, OrderRisk] = {}
    for order_id, shipment_id, probability in links:
        riskiest.setdefault(
            order_id, OrderRisk(order_id=order_id, shipment_id=shipment_id, late_probability=probability)
        )
    OrderRisk.objects.filter(order_id__any=[i for i in ids if i not in riskiest]).delete()
    OrderRisk.objects.bulk_create(
        riskiest.values(),
        update_conflicts=True,
        unique_fields=["order"],
        update_fields=["late_probability", "shipment"],
    )
    return len(riskiest)


def _prediction(shipment_id: int, result: Estimate, situation: Situation) -> Prediction:
    return Prediction(
        shipment_id=shipment_id,
        as_of=situation.as_of,
        stage=result.stage or "",
        basis=result.basis,
        p10=result.p10,
        p50=result.p50,
        p90=result.p90,
        late_probability=result.late_probability,
        promised_at=situation.promised_at,
        carrier_estimate_at=situation.carrier_estimate_at,
        deliveries=result.deliveries,
        reasons=list(result.reasons),
    )


def open_shipment_ids() -> list[int]:
    """Shipments on their way: picked up (or scanned), not delivered."""
    return list(
        Shipment.objects.filter(delivered_at__isnull=True)
        .exclude(picked_up_at__isnull=True, in_transit_at__isnull=True, out_for_delivery_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )


def predictions_refresh_all(*, now: datetime | None = None) -> int:
    """The periodic refresh: rebuild the profiles, then predict every open shipment in batches."""
    now = now or timezone.now()
    profiles_rebuild(now=now)
    ids = open_shipment_ids()
    predicted = 0
    for start in range(0, len(ids), REFRESH_BATCH):
        predicted += predictions_refresh(shipment_ids=ids[start : start + REFRESH_BATCH], now=now)
    Prediction.objects.exclude(shipment_id__any=ids).delete()
    stale = list(OrderRisk.objects.exclude(shipment_id__any=ids).values_list("order_id", flat=True))
    for start in range(0, len(stale), REFRESH_BATCH):
        order_risks_refresh(order_ids=stale[start : start + REFRESH_BATCH])
    return predicted


def backtest_run(*, since: datetime | None = None, progress: Callable = iter) -> BacktestReport:
    """Replay the delivered shipments (picked up since ``since``) and keep the figures."""
    histories = shipment_histories(Shipment.objects.filter(delivered_at__isnull=False).order_by("id"))
    assumed = sum(fact.assumed for history in histories for fact in history.facts)
    points = list(backtest.replay(histories, since=since, progress=progress))
    figures = backtest.report(points, assumed_known=assumed, since=since)
    return BacktestReport.objects.create(since=since, figures=figures)
