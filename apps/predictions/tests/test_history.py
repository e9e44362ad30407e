"""What a shipment's milestones say at a moment: its stage, anchors and lane, known by then only."""

from datetime import UTC, datetime, timedelta

from apps.predictions.estimator import Anchor, Stage
from apps.predictions.history import Fact, ShipmentHistory

T = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
K = "shipment."


def fact(kind: str, hours: float, *, known: float | None = None, place: str = "", **fields) -> Fact:
    at = T + timedelta(hours=hours)
    return Fact(K + kind, at, T + timedelta(hours=known if known is not None else hours), place, **fields)


def history(*facts: Fact) -> ShipmentHistory:
    return ShipmentHistory(1, "SH-1", 7, "Fast Freight", "DC-1", "NA-East", None, list(facts))


ATTEMPTED = history(
    fact("manifested", -1, place="Dallas"),
    fact("picked_up", 0, place="Dallas"),
    fact("in_transit", 20, place="Memphis"),
    fact("out_for_delivery", 40),
    fact("delivery_attempted", 44),
    fact("out_for_delivery", 60),
    fact("delivered", 63),
)


def test_out_for_delivery_is_counted_from_the_first_round_both_when_learning_and_predicting():
    assert ATTEMPTED.anchors(ATTEMPTED.delivery()) == {
        Anchor.PICKUP: T,
        Anchor.OUT_FOR_DELIVERY: T + timedelta(hours=40),
    }
    again = ATTEMPTED.situation(T + timedelta(hours=61))
    assert again.stage == Stage.OUT_FOR_DELIVERY
    assert again.out_for_delivery_at == T + timedelta(hours=40)


def test_a_situation_holds_only_what_had_happened_and_arrived():
    late_scan = history(
        fact("manifested", -1, place="Dallas"),
        fact("picked_up", 0, place="Dallas", estimate=T + timedelta(hours=48)),
        fact("in_transit", 10, known=30, place="Memphis"),
        fact("eta_updated", 12, estimate=T + timedelta(hours=70)),
    )
    before = late_scan.situation(T + timedelta(hours=11))
    assert (before.stage, before.last_scan_at, before.carrier_estimate_at) == (
        Stage.PICKED_UP,
        None,
        T + timedelta(hours=48),
    )
    after = late_scan.situation(T + timedelta(hours=31))
    assert (after.stage, after.last_scan_place, after.carrier_estimate_at) == (
        Stage.IN_TRANSIT,
        "Memphis",
        T + timedelta(hours=70),
    )
    assert after.lane.origin == "Dallas"


def test_a_delivered_shipment_has_no_situation_once_its_delivery_is_known():
    assert ATTEMPTED.situation(T + timedelta(hours=62)) is not None
    assert ATTEMPTED.situation(T + timedelta(hours=63)) is None


def test_a_proof_of_delivery_without_a_delivery_scan_stands_for_the_delivery():
    pod_only = history(fact("picked_up", 0), fact("in_transit", 20), fact("pod_received", 50))
    assert pod_only.delivery().occurred_at == T + timedelta(hours=50)
    assert pod_only.situation(T + timedelta(hours=51)) is None
    assert ATTEMPTED.delivery().occurred_at == T + timedelta(hours=63)
