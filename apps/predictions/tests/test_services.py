"""Predictions written for open shipments: from the stored profiles, per batch, after each milestone."""

import pytest

from apps.predictions import services
from apps.predictions.models import OrderRisk, Prediction, TransitProfile
from apps.predictions.services import (
    deliveries_learn,
    predictions_refresh,
    predictions_refresh_all,
    profiles_rebuild,
)
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Shipment

pytestmark = pytest.mark.django_db

HISTORY = 16  # one more than the model needs on a lane


@pytest.fixture
def lane_history():
    """Sixteen deliveries Dallas → NA-East with Fast Freight, 48 h after pickup (weekends included)."""
    carrier()
    apply(*(shipment_events(f"H{i}", pickup=24 * i, delivered=24 * i + 48) for i in range(HISTORY)))
    profiles_rebuild(now=at(24 * HISTORY + 100))


def open_shipments(count: int, *, pickup: float, **fields) -> list[int]:
    apply(*(shipment_events(f"OPEN{i}", pickup=pickup, **fields) for i in range(count)))
    return list(Shipment.objects.filter(number__startswith="OPEN").order_by("number").values_list("id", flat=True))


def test_an_open_shipment_gets_the_lanes_range_risk_and_reasons(lane_history):
    pickup = 24 * HISTORY + 10
    [shipment_id] = open_shipments(1, pickup=pickup, estimate=pickup + 30, promised=pickup + 40)

    assert predictions_refresh(shipment_ids=[shipment_id], now=at(pickup + 1)) == 1

    prediction = Prediction.objects.get(shipment_id=shipment_id)
    assert prediction.basis == Prediction.Basis.MODEL
    assert prediction.stage == "picked_up"
    assert prediction.p50 == at(pickup + 48)
    assert prediction.late_probability > 0.9  # every like delivery took 48 h; promised in 40
    assert prediction.carrier_estimate_at == at(pickup + 30)
    assert prediction.promised_at == at(pickup + 40)
    assert (
        prediction.reasons[0]
        == "Lane Dallas→NA-East with Fast Freight: 16 deliveries, from pickup p50 2.0 d, p90 2.0 d."
    )
    assert "The carrier's estimate is 18 h before our p50." in prediction.reasons


def test_a_lane_without_history_falls_back_to_the_carriers_estimate(db):
    carrier()
    [shipment_id] = open_shipments(1, pickup=0, estimate=30, promised=20)
    predictions_refresh(shipment_ids=[shipment_id], now=at(1))
    prediction = Prediction.objects.get(shipment_id=shipment_id)
    assert prediction.basis == Prediction.Basis.CARRIER
    assert prediction.p50 == at(30)
    assert prediction.late_probability == 1.0
    assert prediction.reasons[0].startswith("Too few deliveries to predict")


@pytest.mark.parametrize("count", [1, 25])
def test_a_batch_costs_the_same_queries_whatever_its_size(lane_history, count, django_assert_num_queries):
    ids = open_shipments(count, pickup=24 * HISTORY + 10)
    # shipments, their orders, their milestones, the profiles; a savepoint around delete and upsert;
    # the orders' risks: their orders, their riskiest shipments, the upsert
    with django_assert_num_queries(10):
        predictions_refresh(shipment_ids=ids, now=at(24 * HISTORY + 11))
    assert Prediction.objects.count() == count


def test_a_delivered_shipment_loses_its_prediction(lane_history):
    pickup = 24 * HISTORY + 10
    [shipment_id] = open_shipments(1, pickup=pickup)
    predictions_refresh(shipment_ids=[shipment_id], now=at(pickup + 1))
    apply(shipment_events("OPEN0", pickup=pickup, delivered=pickup + 40))
    predictions_refresh(shipment_ids=[shipment_id], now=at(pickup + 41))
    assert not Prediction.objects.filter(shipment_id=shipment_id).exists()


def test_a_new_milestone_moves_the_prediction_of_that_shipment_only(lane_history, django_capture_on_commit_callbacks):
    pickup = 24 * HISTORY + 10
    first, other = open_shipments(2, pickup=pickup)
    predictions_refresh(shipment_ids=[first, other], now=at(pickup + 1))
    untouched = Prediction.objects.get(shipment_id=other).as_of

    with django_capture_on_commit_callbacks(execute=True):
        apply(shipment_events("OPEN0", pickup=pickup, out_for_delivery=pickup + 20))

    moved = Prediction.objects.get(shipment_id=first)
    assert moved.stage == "out_for_delivery"
    assert Prediction.objects.get(shipment_id=other).as_of == untouched


def test_the_periodic_refresh_learns_recent_deliveries_and_predicts_every_open_shipment(lane_history):
    pickup = 24 * HISTORY + 10
    open_shipments(3, pickup=pickup)
    assert predictions_refresh_all(now=at(pickup + 2)) == 3
    assert set(Prediction.objects.values_list("basis", flat=True)) == {Prediction.Basis.MODEL}


def test_deliveries_older_than_the_window_are_forgotten(lane_history):
    profiles_rebuild(now=at(24 * 400))
    assert not TransitProfile.objects.exists()


def lane_deliveries() -> int:
    return TransitProfile.objects.get(key__startswith="lane:", anchor="pickup").deliveries


def test_a_delivery_is_learnt_at_once_and_only_once(lane_history, django_capture_on_commit_callbacks):
    pickup = 24 * HISTORY + 10
    [shipment_id] = open_shipments(1, pickup=pickup)
    predictions_refresh(shipment_ids=[shipment_id], now=at(pickup + 1))
    assert lane_deliveries() == HISTORY

    with django_capture_on_commit_callbacks(execute=True):
        apply(shipment_events("OPEN0", pickup=pickup, delivered=pickup + 40))
    assert lane_deliveries() == HISTORY + 1
    assert not Prediction.objects.filter(shipment_id=shipment_id).exists()

    with django_capture_on_commit_callbacks(execute=True):
        apply(shipment_events("OPEN0", pickup=pickup, out_for_delivery=pickup + 38))
    assert lane_deliveries() == HISTORY + 1


@pytest.mark.parametrize("count", [1, 25])
def test_learning_a_batch_of_deliveries_costs_the_same_queries(lane_history, count, django_assert_num_queries):
    pickup = 24 * HISTORY + 10
    ids = open_shipments(count, pickup=pickup)
    predictions_refresh(shipment_ids=ids, now=at(pickup + 1))
    apply(*(shipment_events(f"OPEN{i}", pickup=pickup, delivered=pickup + 40) for i in range(count)))
    # claim, lock, three for the histories, the profiles, update, delete (the savepoint around them);
    # the orders' risks: their orders, their riskiest shipments (none left), dropping theirs
    with django_assert_num_queries(13):
        assert deliveries_learn(shipment_ids=ids) == count
    assert lane_deliveries() == HISTORY + count
    assert not OrderRisk.objects.exists()  # delivered: nothing at risk any more


def test_a_shipment_not_picked_up_yet_has_no_prediction(lane_history):
    apply(
        [item for item in shipment_events("WAITING", pickup=24 * HISTORY + 10) if item["kind"] != "shipment.picked_up"]
    )
    waiting = Shipment.objects.get(number="WAITING").id
    assert predictions_refresh(shipment_ids=[waiting], now=at(24 * HISTORY + 20)) == 0
    assert not Prediction.objects.exists()


def test_a_rebuild_in_small_batches_learns_the_same_as_in_one(lane_history, monkeypatch):
    def stored() -> dict:
        return {(p.key, p.anchor): p.samples for p in TransitProfile.objects.all()}

    whole = stored()
    monkeypatch.setattr(services, "REBUILD_BATCH", 3)
    profiles_rebuild(now=at(24 * HISTORY + 100))
    assert stored() == whole
    assert len(whole[next(k for k in whole if k[0].startswith("lane:"))]) == HISTORY
