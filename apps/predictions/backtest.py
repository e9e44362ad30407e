"""The backtest: replay history as it was known at each milestone and score the predictions.

At each moment of prediction (pickup, first in-transit scan, out for delivery) the model holds
only the deliveries reported before that moment, and the shipment's own facts known by then; the
same ``estimate`` as the live predictions reads them. The carrier's latest estimate known at that
moment and the promise are scored on the same shipments.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from apps.predictions.estimator import Basis, Estimate, Samples, Stage, estimate, quantile
from apps.predictions.history import Fact, ShipmentHistory, learn
from apps.timeline.events import EventKind

K = EventKind
MOMENTS = ((Stage.PICKED_UP, K.SHIPMENT_PICKED_UP), (Stage.IN_TRANSIT, K.SHIPMENT_IN_TRANSIT))
MOMENTS += ((Stage.OUT_FOR_DELIVERY, K.SHIPMENT_OUT_FOR_DELIVERY),)
CALIBRATION_BINS = 10
ALL_CARRIERS = "all carriers"


@dataclass(frozen=True)
class Point:
    """One prediction made during the replay, with what really happened."""

    shipment_id: int
    carrier: str
    stage: str
    at: datetime
    actual: datetime
    estimate: Estimate
    carrier_estimate: datetime | None
    promised_at: datetime | None


def _moments(history: ShipmentHistory, delivery: Fact) -> Iterator[tuple[str, datetime]]:
    """The first fact of each stage, at the moment it became known, if before the delivery was."""
    for stage, kind in MOMENTS:
        fact = next((f for f in history.facts if f.kind == kind), None)
        if fact is not None and max(fact.occurred_at, fact.known_at) < delivery.occurred_at:
            yield stage, max(fact.occurred_at, fact.known_at)


def replay(
    histories: Iterable[ShipmentHistory], *, since: datetime | None = None, progress: Callable = iter
) -> Iterator[Point]:
    """Every prediction moment of the delivered shipments picked up since ``since``, in time
    order, predicted from what was known then. ``progress`` wraps the moments (a progress bar)."""
    delivered = [(h, d) for h in histories if (d := h.delivery()) is not None]
    learning = sorted(delivered, key=lambda pair: pair[1].known_at)
    moments = sorted(
        (
            (at, stage, history, delivery)
            for history, delivery in delivered
            for stage, at in _moments(history, delivery)
        ),
        key=lambda moment: moment[0],
    )
    if since is not None:
        moments = [moment for moment in moments if moment[0] >= since]
    profiles: dict[tuple[str, str], Samples] = {}
    learnt = 0
    for at, stage, history, delivery in progress(moments):
        while learnt < len(learning) and learning[learnt][1].known_at <= at:
            learn(profiles, *learning[learnt])
            learnt += 1
        situation = history.situation(at)
        if situation is None:
            continue
        yield Point(
            shipment_id=history.id,
            carrier=history.carrier,
            stage=stage,
            at=at,
            actual=delivery.occurred_at,
            estimate=estimate(situation, profiles),
            carrier_estimate=situation.carrier_estimate_at,
            promised_at=situation.promised_at,
        )


def _hours(a: datetime, b: datetime) -> float:
    return abs((a - b).total_seconds()) / 3600


def _errors(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "n": len(values),
        "mae_hours": round(sum(values) / len(values), 2) if values else None,
        "p90_abs_error_hours": round(quantile(ordered, 0.9), 2) if values else None,
    }


def _brier(pairs: list[tuple[float, bool]]) -> float | None:
    return round(sum((p - late) ** 2 for p, late in pairs) / len(pairs), 4) if pairs else None


def _calibration(pairs: list[tuple[float, bool]]) -> list[dict]:
    bins: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for p, late in pairs:
        bins[min(int(p * CALIBRATION_BINS), CALIBRATION_BINS - 1)].append((p, late))
    return [
        {
            "from": index / CALIBRATION_BINS,
            "to": (index + 1) / CALIBRATION_BINS,
            "n": len(members),
            "predicted": round(sum(p for p, _ in members) / len(members), 3),
            "observed": round(sum(late for _, late in members) / len(members), 3),
        }
        for index, members in sorted(bins.items())
    ]


def score(points: list[Point]) -> dict:
    """The figures of one group of points: our model, the carrier's estimate and the promise."""
    model = [p for p in points if p.estimate.basis == Basis.MODEL]
    with_carrier = [p for p in model if p.carrier_estimate is not None]
    with_promise = [p for p in model if p.promised_at is not None and p.estimate.late_probability is not None]
    risk = [(p.estimate.late_probability, p.actual > p.promised_at) for p in with_promise]
    carrier_risk = [
        (float(p.carrier_estimate > p.promised_at), p.actual > p.promised_at)
        for p in with_promise
        if p.carrier_estimate
    ]
    base_rate = sum(late for _, late in risk) / len(risk) if risk else None
    inside = [p.estimate.p10 <= p.actual <= p.estimate.p90 for p in model]
    promised = [p for p in points if p.promised_at is not None]
    return {
        "points": len(points),
        "too_few_deliveries": len(points) - len(model),
        "model": {
            **_errors([_hours(p.estimate.p50, p.actual) for p in model]),
            "coverage_p10_p90": round(sum(inside) / len(inside), 3) if inside else None,
            "brier": _brier(risk),
            "base_rate": round(base_rate, 3) if base_rate is not None else None,
            "base_rate_brier": _brier([(base_rate, late) for _, late in risk]) if risk else None,
            "calibration": _calibration(risk),
        },
        "carrier_estimate": {
            **_errors([_hours(p.carrier_estimate, p.actual) for p in with_carrier]),
            "model_mae_hours_same_shipments": _errors([_hours(p.estimate.p50, p.actual) for p in with_carrier])[
                "mae_hours"
            ],
            "brier": _brier(carrier_risk),
        },
        "promise": _errors([_hours(p.promised_at, p.actual) for p in promised]),
    }


def report(points: Iterable[Point], *, assumed_known: int, since: datetime | None) -> dict:
    """Scores per stage, for all carriers and for each one."""
    groups: dict[str, dict[str, list[Point]]] = {stage: defaultdict(list) for stage, _ in MOMENTS}
    for point in points:
        groups[point.stage][ALL_CARRIERS].append(point)
        groups[point.stage][point.carrier].append(point)
    return {
        "since": since.isoformat() if since else None,
        "assumptions": [
            f"{assumed_known} milestones were stored long after they happened (history loaded in bulk): "
            "each is taken as known when it happened.",
            "The promise is each order's promised date as it stands now.",
            "Weekends are counted in UTC.",
        ],
        "stages": [
            {
                "stage": stage,
                "label": Stage.LABELS[stage],
                "carriers": [
                    {"carrier": carrier, **score(members)}
                    for carrier, members in sorted(
                        by_carrier.items(), key=lambda item: (item[0] != ALL_CARRIERS, item[0])
                    )
                ],
            }
            for stage, by_carrier in groups.items()
        ],
    }
