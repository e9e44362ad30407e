"""Writes: the transit profiles the model reads, and the predictions of open shipments."""

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from apps.predictions import backtest
from apps.predictions.estimator import Estimate, Samples, Situation, estimate
from apps.predictions.history import ShipmentHistory, learn, shipment_histories
from apps.predictions.models import BacktestReport, Prediction, TransitProfile
from apps.timeline.models import Shipment

# The deliveries a rebuild learns from: long enough for quiet lanes, short enough to follow change.
PROFILE_WINDOW = timedelta(days=180)
REFRESH_BATCH = 500
LOCK_ID = 0x455441  # any constant; names the profile writer's advisory lock


def profiles_from(histories: Iterable[ShipmentHistory]) -> dict[tuple[str, str], Samples]:
    """The groups' samples from delivered shipments, added in the order they were delivered."""
    profiles: dict[tuple[str, str], Samples] = {}
    delivered = [(h, h.delivery()) for h in histories]
    for history, delivery in sorted(((h, d) for h, d in delivered if d), key=lambda pair: pair[1].occurred_at):
        learn(profiles, history, delivery)
    return profiles


def profiles_rebuild(*, now: datetime | None = None) -> int:
    """Rebuild every transit profile from the deliveries of the last ``PROFILE_WINDOW``.

    Runs on the periodic task, never per event; writers take an advisory lock so two rebuilds
    never interleave their delete and insert. Returns the number of profiles written."""
    now = now or timezone.now()
    recent = Shipment.objects.filter(delivered_at__gte=now - PROFILE_WINDOW, delivered_at__lte=now)
    profiles = profiles_from(shipment_histories(recent))
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


def _profiles_for(histories: list[ShipmentHistory]) -> dict[tuple[str, str], Samples]:
    keys = {key for history in histories for key, _ in history.lane().groups()}
    rows = TransitProfile.objects.filter(key__any=sorted(keys)).values_list("key", "anchor", "samples")
    return {(key, anchor): Samples.of(samples) for key, anchor, samples in rows}


def predictions_refresh(*, shipment_ids: Iterable[int], now: datetime | None = None) -> int:
    """Predict the open shipments among ``shipment_ids`` and drop the predictions of the others
    (delivered, or gone): six queries for the batch, whatever its size. Returns how many were
    predicted."""
    now = now or timezone.now()
    ids = sorted(set(shipment_ids))
    open_shipments = Shipment.objects.filter(id__any=ids, delivered_at__isnull=True)
    histories = shipment_histories(open_shipments)
    profiles = _profiles_for(histories)
    rows = []
    for history in histories:
        situation = history.situation(now)
        if situation is not None:
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
    return len(rows)


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
    return predicted


def backtest_run(*, since: datetime | None = None, progress: Callable = iter) -> BacktestReport:
    """Replay the delivered shipments (picked up since ``since``) and keep the figures."""
    histories = shipment_histories(Shipment.objects.filter(delivered_at__isnull=False).order_by("id"))
    assumed = sum(fact.assumed for history in histories for fact in history.facts)
    points = list(backtest.replay(histories, since=since, progress=progress))
    figures = backtest.report(points, assumed_known=assumed, since=since)
    return BacktestReport.objects.create(since=since, figures=figures)
