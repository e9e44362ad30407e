"""The backtest: history replayed as known at each moment, scored against the carrier and the promise."""

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db.models import F, Q

from apps.predictions.backtest import replay
from apps.predictions.estimator import Basis, estimate
from apps.predictions.history import shipment_histories
from apps.predictions.models import BacktestReport, Prediction
from apps.predictions.services import profiles_from
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Milestone, Shipment

pytestmark = pytest.mark.django_db

HISTORY = 20
PICKUP = 24 * HISTORY + 5


def lane_history() -> None:
    """Twenty deliveries 48 h after pickup; the carrier's estimate 10 h late; promised at 60 h."""
    apply(
        *(
            shipment_events(f"H{i}", pickup=24 * i, delivered=24 * i + 48, estimate=24 * i + 58, promised=24 * i + 60)
            for i in range(HISTORY)
        )
    )


def in_real_time(moment_of_late_arrival: dict[str, float] | None = None) -> None:
    """Every milestone received half an hour after it happened, or at the hours given by event id."""
    Milestone.objects.update(recorded_at=F("occurred_at") + timedelta(minutes=30))
    for event_id, hours in (moment_of_late_arrival or {}).items():
        Milestone.objects.filter(event_id=event_id).update(recorded_at=at(hours))


def test_a_prediction_for_time_t_reads_nothing_that_happened_or_arrived_after_t():
    carrier()
    lane_history()
    # The shipment predicted: scanned in Memphis 10 h after pickup, then out for delivery and delivered.
    target = shipment_events(
        "X", pickup=PICKUP, scans=((PICKUP + 10, "Memphis"),), out_for_delivery=PICKUP + 40, delivered=PICKUP + 47
    )
    target[2]["estimated_delivery_at"] = at(PICKUP + 58).isoformat()
    # A new estimate made before the scan but received after it, and a later one.
    estimates = [
        {
            **target[2],
            "event_id": f"X-eta-{hours}",
            "kind": "shipment.eta_updated",
            "occurred_at": at(hours).isoformat(),
            "estimated_delivery_at": at(eta).isoformat(),
        }
        for hours, eta in ((PICKUP + 9, PICKUP + 20), (PICKUP + 30, PICKUP + 90))
    ]
    # Deliveries after the scan, much slower than the lane's history.
    slow = [shipment_events(f"S{i}", pickup=PICKUP - 30 + i, delivered=PICKUP + 20 + i) for i in range(20)]
    apply(target, estimates, *slow)
    in_real_time({f"X-eta-{PICKUP + 9}": PICKUP + 11})

    x = Shipment.objects.get(number="X").id
    point = next(
        p for p in replay(shipment_histories(Shipment.objects.all())) if p.shipment_id == x and p.stage == "in_transit"
    )
    t = point.at
    assert t == at(PICKUP + 10.5)
    assert point.carrier_estimate == at(PICKUP + 58)  # the estimate received after t is not read
    assert point.estimate.basis == Basis.MODEL
    assert point.estimate.p50 == at(PICKUP + 48)  # the slow deliveries after t are not learnt

    # The same prediction from a database that holds only what was known at t.
    Milestone.objects.filter(Q(occurred_at__gt=t) | Q(recorded_at__gt=t)).delete()
    histories = shipment_histories(Shipment.objects.all())
    known = next(h for h in histories if h.id == x)
    assert estimate(known.situation(t), profiles_from(histories)) == point.estimate


def run(*args: str) -> str:
    out = StringIO()
    call_command("eta", "backtest", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_report_scores_the_model_the_carrier_and_the_promise_per_stage_and_carrier():
    carrier()
    lane_history()
    in_real_time()

    figures = json.loads(run("--json"))

    pickup = next(stage for stage in figures["stages"] if stage["stage"] == "picked_up")
    everyone, fast = pickup["carriers"]
    assert (everyone["carrier"], fast["carrier"]) == ("all carriers", "Fast Freight")
    # At the pickup of shipment i, the deliveries of 0 to i - 2 are known: 15 from the 17th on.
    assert everyone["points"] == HISTORY
    assert everyone["too_few_deliveries"] == 16
    assert everyone["model"]["n"] == 4
    assert everyone["model"]["mae_hours"] == 0.0
    assert everyone["model"]["coverage_p10_p90"] == 1.0
    assert everyone["model"]["brier"] < 0.01
    assert everyone["carrier_estimate"]["mae_hours"] == 10.0
    assert everyone["carrier_estimate"]["model_mae_hours_same_shipments"] == 0.0
    assert everyone["promise"] == {"n": HISTORY, "mae_hours": 12.0, "p90_abs_error_hours": 12.0}
    assert BacktestReport.objects.get().figures == figures


def test_the_report_states_its_assumptions_and_reads_as_a_table():
    carrier()
    lane_history()  # stored now, weeks after it happened: history loaded in bulk

    text = run()

    assert "milestones were stored long after they happened" in text
    assert "at pickup" in text
    assert "Fast Freight" in text


def test_since_keeps_the_predictions_made_from_that_day():
    carrier()
    lane_history()
    in_real_time()
    figures = json.loads(run("--json", "--since", at(24 * 18).date().isoformat()))
    pickup = next(stage for stage in figures["stages"] if stage["stage"] == "picked_up")
    assert pickup["carriers"][0]["points"] == 2


def test_a_since_that_is_not_a_date_is_refused():
    with pytest.raises(CommandError, match="--since: '2026-13-01' is not a date"):
        run("--since", "2026-13-01")


def test_refresh_relearns_and_predicts_the_shipments_on_their_way():
    carrier()
    lane_history()
    apply(shipment_events("LIVE", pickup=24 * HISTORY, promised=24 * HISTORY + 60))
    out = StringIO()
    with time_machine.travel(at(24 * HISTORY + 1), tick=False):
        call_command("eta", "refresh", stdout=out)
    assert out.getvalue() == "Shipments on their way predicted: 1.\n"
    assert Prediction.objects.get().p50 == at(24 * HISTORY + 48)


@pytest.mark.parametrize(("slow_delivered", "said"), [(690, True), (710, False)])
def test_the_lanes_recent_pace_counts_only_the_deliveries_made_before_the_prediction(slow_delivered, said):
    """Thirty deliveries in 48 h, then twelve in 72 h: before the pickup they slow the range down;
    delivered after it, the replay does not know them."""
    carrier()
    usual = [shipment_events(f"U{i}", pickup=20 * i, delivered=20 * i + 48) for i in range(30)]
    slow = [shipment_events(f"S{i}", pickup=slow_delivered - 72 - i, delivered=slow_delivered - i) for i in range(12)]
    apply(*usual, *slow, shipment_events("X", pickup=700, delivered=760))
    in_real_time()

    x = Shipment.objects.get(number="X").id
    point = next(
        p for p in replay(shipment_histories(Shipment.objects.all())) if p.shipment_id == x and p.stage == "picked_up"
    )

    slower = "Fast Freight on Dallas→NA-East: last 12 deliveries 50% slower than usual; the range is scaled so."
    assert (slower in point.estimate.reasons) is said
    assert (point.estimate.p50 > at(760)) is said
