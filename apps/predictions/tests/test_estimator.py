"""The model on plain data: groups, fallbacks, time already spent, weekends, risk and its words."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.predictions.estimator import (
    MAX_SAMPLES,
    MIN_DELIVERIES,
    RECENT,
    RECENT_BEFORE,
    Anchor,
    Basis,
    Lane,
    Samples,
    Situation,
    Stage,
    estimate,
    quantile,
)

LANE = Lane(carrier_id=7, carrier="Fast Freight", origin="Dallas", destination="NA-East")
LANE_KEY, CARRIER_KEY, ALL_KEY = (key for key, _ in LANE.groups())
MONDAY = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def samples(hours: list[float], *, weekend: bool = True) -> Samples:
    """Transit times; ``weekend``: a fifth of them ended at a weekend (a carrier that delivers then)."""
    return Samples.of([h, h, weekend and index % 5 == 0] for index, h in enumerate(hours))


def situation(**fields) -> Situation:
    values = {"shipment_id": 1, "lane": LANE, "as_of": MONDAY, "stage": Stage.PICKED_UP, "picked_up_at": MONDAY}
    return Situation(**{**values, **fields})


def test_the_range_is_read_from_the_lanes_deliveries():
    hours = [float(h) for h in range(20, 60, 2)]  # 20 deliveries, 20 h to 58 h
    result = estimate(situation(), {(LANE_KEY, Anchor.PICKUP): samples(hours)})

    assert result.basis == Basis.MODEL
    assert result.p50 == MONDAY + timedelta(hours=39)
    assert result.p10 == MONDAY + timedelta(hours=23.8)
    assert result.p90 == MONDAY + timedelta(hours=54.2)
    assert result.deliveries == 20
    assert result.reasons[0] == "Lane Dallas→NA-East with Fast Freight: 20 deliveries, from pickup p50 39 h, p90 2.3 d."
    assert "Picked up 0 h ago." in result.reasons


def test_a_lane_with_few_deliveries_falls_back_to_the_carrier_then_to_everything():
    few = samples([30.0] * 3)
    carrier_wide = samples([float(h) for h in range(40, 40 + MIN_DELIVERIES)])
    profiles = {(LANE_KEY, Anchor.PICKUP): few, (CARRIER_KEY, Anchor.PICKUP): carrier_wide}

    result = estimate(situation(), profiles)
    assert result.reasons[0].startswith(f"Carrier Fast Freight, all lanes: {MIN_DELIVERIES} deliveries")
    assert "lane Dallas→NA-East with Fast Freight: 3" in result.reasons[1]

    everything = samples([100.0] * 30)
    result = estimate(situation(), {(LANE_KEY, Anchor.PICKUP): few, (ALL_KEY, Anchor.PICKUP): everything})
    assert result.reasons[0].startswith("All carriers: 30 deliveries")
    assert result.p50 == MONDAY + timedelta(hours=100)


def test_too_few_deliveries_anywhere_says_so_and_shows_the_carriers_estimate():
    eta = MONDAY + timedelta(hours=50)
    result = estimate(
        situation(carrier_estimate_at=eta, promised_at=MONDAY + timedelta(hours=40)),
        {(LANE_KEY, Anchor.PICKUP): samples([30.0] * 3)},
    )
    assert result.basis == Basis.CARRIER
    assert (result.p10, result.p50, result.p90) == (None, eta, None)
    assert result.late_probability == 1.0
    assert result.reasons[0].startswith("Too few deliveries to predict (lane Dallas→NA-East with Fast Freight: 3;")
    assert "Showing the carrier's estimate." in result.reasons

    waiting = estimate(situation(stage=None, picked_up_at=None, carrier_estimate_at=eta), {})
    assert (waiting.basis, waiting.p50) == (Basis.CARRIER, eta)
    assert waiting.reasons[0] == "Not picked up yet: transit starts at pickup."

    nothing = estimate(situation(), {})
    assert nothing.basis == Basis.NONE
    assert nothing.p50 is None
    assert "No carrier estimate either." in nothing.reasons


def test_time_already_spent_reads_only_the_deliveries_that_took_longer():
    hours = [float(h) for h in range(10, 110, 2)]  # 50 deliveries, 10 h to 108 h
    mixed = sorted(hours, key=lambda h: (h * 7) % 50)  # the last few as fast as the rest: no change of pace
    profiles = {(LANE_KEY, Anchor.PICKUP): samples(mixed)}
    scanned = MONDAY + timedelta(hours=30)
    now = MONDAY + timedelta(hours=60)

    at_pickup = estimate(situation(), profiles)
    later = estimate(
        situation(as_of=now, stage=Stage.IN_TRANSIT, last_scan_at=scanned, last_scan_place="Memphis"), profiles
    )

    assert later.deliveries == 24  # 62 h to 108 h
    assert later.p10 > now
    assert later.p50 == MONDAY + timedelta(hours=85)
    assert later.p50 > at_pickup.p50
    assert "Last scan Memphis 30 h ago." in later.reasons
    assert "24 of those deliveries were still under way after as long as this one." in later.reasons


def test_out_for_delivery_counts_from_the_van_not_from_pickup():
    out = MONDAY + timedelta(hours=50)
    profiles = {
        (LANE_KEY, Anchor.PICKUP): samples([48.0] * 20),
        (LANE_KEY, Anchor.OUT_FOR_DELIVERY): samples([3.0] * 20),
    }
    result = estimate(situation(as_of=out, stage=Stage.OUT_FOR_DELIVERY, out_for_delivery_at=out), profiles)
    assert result.p50 == out + timedelta(hours=3)
    assert "Out for delivery since 0 h ago." in result.reasons


@pytest.mark.parametrize(
    ("delivers_at_weekends", "expected"),
    [(False, datetime(2026, 11, 9, 12, 0, tzinfo=UTC)), (True, datetime(2026, 11, 7, 12, 0, tzinfo=UTC))],
)
def test_weekends_do_not_count_for_a_carrier_that_never_delivers_then(delivers_at_weekends, expected):
    friday_noon = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
    profiles = {(LANE_KEY, Anchor.PICKUP): samples([24.0] * 20, weekend=delivers_at_weekends)}
    result = estimate(situation(as_of=friday_noon, picked_up_at=friday_noon), profiles)
    assert result.p50 == expected
    weekend_reason = "Weekends not counted: 0 of 20 deliveries were at a weekend."
    assert (weekend_reason in result.reasons) is not delivers_at_weekends


def test_the_risk_is_the_share_of_like_deliveries_later_than_the_promise():
    profiles = {(LANE_KEY, Anchor.PICKUP): samples([float(h) for h in range(1, 21)])}
    result = estimate(situation(promised_at=MONDAY + timedelta(hours=15)), profiles)
    assert result.late_probability == pytest.approx(5.5 / 21)  # 16 h to 20 h, half a delivery each way
    assert "Promised in 15 h." in result.reasons

    relaxed = estimate(situation(promised_at=MONDAY + timedelta(hours=100)), profiles)
    assert relaxed.late_probability < 0.05


def test_a_group_keeps_its_most_recent_deliveries():
    group = samples([1000.0] + [10.0] * MAX_SAMPLES)
    assert group.count == MAX_SAMPLES
    assert max(group.wall) == 10.0


def test_every_carriers_deliveries_are_not_used_when_the_carriers_own_estimate_lies_outside_them():
    parcels = {(ALL_KEY, Anchor.PICKUP): samples([float(h) for h in range(20, 60, 2)])}
    vessel = MONDAY + timedelta(days=20)

    result = estimate(situation(carrier_estimate_at=vessel), parcels)

    assert result.basis == Basis.CARRIER
    assert result.p50 == vessel
    assert "all carriers: the carrier's estimate is outside their range" in result.reasons[0]
    assert estimate(situation(carrier_estimate_at=MONDAY + timedelta(hours=40)), parcels).basis == Basis.MODEL


def test_a_shipment_that_outlived_its_carriers_history_is_not_read_from_other_carriers():
    profiles = {
        (CARRIER_KEY, Anchor.PICKUP): samples([float(h) for h in range(10, 50, 2)]),  # 20, at most 48 h
        (ALL_KEY, Anchor.PICKUP): samples([float(h) for h in range(10, 510, 5)]),  # 100, up to 505 h
    }
    eta = MONDAY + timedelta(hours=70)
    overdue = situation(as_of=MONDAY + timedelta(hours=60), stage=Stage.IN_TRANSIT, carrier_estimate_at=eta)

    result = estimate(overdue, profiles)

    assert (result.basis, result.p50) == (Basis.CARRIER, eta)
    assert "carrier Fast Freight, all lanes: 0 of 20 took this long" in result.reasons[0]
    assert "all carriers" not in result.reasons[0]


def slowing_lane(usual: float, recent: float, *, before: int = RECENT_BEFORE) -> Samples:
    """``before`` deliveries around ``usual`` hours, then the last ``RECENT`` around ``recent``."""
    spread = [-4.0, -2.0, 0.0, 2.0, 4.0]
    older = [usual + spread[i % 5] for i in range(before)]
    return samples(older + [recent] * RECENT)


def scaled_median(lane: Samples, pace: float) -> datetime:
    return MONDAY + timedelta(hours=pace * quantile(lane.wall, 0.5))


def test_a_lane_whose_last_deliveries_are_slower_than_usual_moves_the_range_later_and_says_so():
    steady = estimate(situation(), {(LANE_KEY, Anchor.PICKUP): slowing_lane(40.0, 40.0)})
    lane = slowing_lane(40.0, 52.0)
    slowing = estimate(situation(promised_at=MONDAY + timedelta(hours=46)), {(LANE_KEY, Anchor.PICKUP): lane})

    assert steady.p50 == MONDAY + timedelta(hours=40)
    assert slowing.p50 == scaled_median(lane, 1.3)  # 52 h against 40 h: 30 % slower
    assert slowing.late_probability > 0.5
    assert "Fast Freight on Dallas→NA-East: last 12 deliveries 30% slower than usual; the range is scaled so." in (
        slowing.reasons
    )
    assert not any("than usual" in reason for reason in steady.reasons)


def test_the_recent_pace_is_bounded_and_needs_enough_history():
    much_slower, faster = slowing_lane(20.0, 200.0), slowing_lane(40.0, 30.0)
    bounded = estimate(situation(), {(LANE_KEY, Anchor.PICKUP): much_slower})
    short = estimate(situation(), {(LANE_KEY, Anchor.PICKUP): slowing_lane(40.0, 60.0, before=RECENT_BEFORE - 1)})
    quicker = estimate(situation(), {(LANE_KEY, Anchor.PICKUP): faster})
    # A median 37 % higher, from half slow and half fast deliveries: chance, not a change of pace.
    mixed = samples([40.0 + (-4, -2, 0, 2, 4)[i % 5] for i in range(RECENT_BEFORE)] + [30.0, 80.0] * (RECENT // 2))
    wavering = estimate(situation(), {(LANE_KEY, Anchor.PICKUP): mixed})

    assert bounded.p50 == scaled_median(much_slower, 1.8)
    assert "last 12 deliveries 80% slower than usual (counted at most that)" in " ".join(bounded.reasons)
    assert not any("than usual" in reason for reason in short.reasons + wavering.reasons)
    assert quicker.p50 == scaled_median(faster, 0.75)
    assert "25% faster than usual" in " ".join(quicker.reasons)


@given(
    st.lists(
        st.tuples(st.floats(0, 500, allow_nan=False), st.floats(0, 500, allow_nan=False), st.booleans()),
        max_size=MAX_SAMPLES + 40,
    )
)
def test_stored_samples_read_back_as_they_were_kept_one_by_one(rows):
    one_by_one = Samples()
    for wall, working, weekend in rows:
        one_by_one.add(wall, working, weekend)

    read = Samples.of([list(row) for row in rows])

    assert (read.wall, read.working, read.weekend_deliveries) == (
        one_by_one.wall,
        one_by_one.working,
        one_by_one.weekend_deliveries,
    )
    assert read.rows() == one_by_one.rows()
    read.add(1.0, 1.0, True)  # and go on keeping the most recent ones
    one_by_one.add(1.0, 1.0, True)
    assert (read.wall, read.count) == (one_by_one.wall, one_by_one.count)
