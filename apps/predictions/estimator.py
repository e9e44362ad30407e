"""The transit-time model: empirical quantiles of past deliveries, as known at one moment.

Pure functions over plain data, shared by the live predictions and the backtest, so the backtest
measures the very code that predicts. A shipment's remaining time is read from the deliveries of
its group that took longer than the time it has already spent, so "30 hours since the last scan"
moves the range the way it moved for the shipments that were as late at that point.
"""

from bisect import bisect_right, insort
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from apps.predictions.clock import add_hours, hours_between, is_weekend

# Fewer deliveries than this in a group (still under way at the shipment's elapsed time) and the
# model tries the next, broader group; with none left it shows the carrier's estimate.
MIN_DELIVERIES = 15
# The most recent deliveries a group keeps: a lane that slows down shows in its figures soon.
MAX_SAMPLES = 400
# A group whose carrier delivered fewer than this share at weekends is read on the working clock.
WEEKEND_SHARE = 0.02
# A lane's last RECENT deliveries against the ones before them (at least RECENT_BEFORE of those):
# when their median differs by more than RECENT_CHANGE, the lane's times are scaled by the ratio,
# kept within RECENT_BOUNDS, so a carrier slowing down on a lane shows before its history turns.
RECENT = 12
RECENT_BEFORE = 20
RECENT_CHANGE = 0.1
RECENT_BOUNDS = (0.6, 1.8)
RECENT_AGREE = 10


# Group keys: a lane's, then "carrier:<id>", then everything.
LANE, CARRIER, ALL = "lane:", "carrier:", "all"


class Stage:
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    LABELS = {PICKED_UP: "at pickup", IN_TRANSIT: "in transit", OUT_FOR_DELIVERY: "out for delivery"}


class Anchor:
    """Where the transit time of a past delivery is counted from."""

    PICKUP = "pickup"
    OUT_FOR_DELIVERY = "out_for_delivery"


@dataclass(frozen=True)
class Lane:
    carrier_id: int | None
    carrier: str
    origin: str
    destination: str
    service: str = ""

    def groups(self) -> list[tuple[str, str]]:
        """(key, words) from the narrowest group to the broadest."""
        lane = f"{self.origin or '?'}→{self.destination or '?'}"
        service = f" {self.service}" if self.service else ""
        return [
            (
                f"{LANE}{self.carrier_id}|{self.origin}|{self.destination}|{self.service}",
                f"lane {lane} with {self.carrier}{service}",
            ),
            (f"{CARRIER}{self.carrier_id}", f"carrier {self.carrier}, all lanes"),
            (ALL, "all carriers"),
        ]


@dataclass
class Samples:
    """Transit times (hours) of a group's most recent deliveries, kept sorted on both clocks."""

    wall: list[float] = field(default_factory=list)
    working: list[float] = field(default_factory=list)
    weekend_deliveries: int = 0
    _order: deque = field(default_factory=deque, repr=False)

    def add(self, wall: float, working: float, weekend: bool) -> None:
        self._order.append((wall, working, weekend))
        insort(self.wall, wall)
        insort(self.working, working)
        self.weekend_deliveries += weekend
        if len(self._order) > MAX_SAMPLES:
            old_wall, old_working, old_weekend = self._order.popleft()
            self.wall.pop(bisect_right(self.wall, old_wall) - 1)
            self.working.pop(bisect_right(self.working, old_working) - 1)
            self.weekend_deliveries -= old_weekend

    def rows(self) -> list[list]:
        """The samples in arrival order, as stored."""
        return [[wall, working, weekend] for wall, working, weekend in self._order]

    @classmethod
    def of(cls, rows: Iterable[Iterable]) -> "Samples":
        """The stored samples (``rows()``), the most recent ``MAX_SAMPLES``; sorted once, not
        inserted one by one: every prediction batch reads a few groups of them."""
        kept = deque(((wall, working, bool(weekend)) for wall, working, weekend in rows), maxlen=MAX_SAMPLES)
        return cls(
            wall=sorted(row[0] for row in kept),
            working=sorted(row[1] for row in kept),
            weekend_deliveries=sum(row[2] for row in kept),
            _order=deque(kept),
        )

    @property
    def count(self) -> int:
        return len(self._order)

    def recent_pace(self, *, working: bool) -> float:
        """How long the last ``RECENT`` deliveries took against the ones before them: the ratio of
        their medians, bounded. 1 when too few deliveries say so, when the change is under
        ``RECENT_CHANGE``, or when fewer than ``RECENT_AGREE`` of them are on the same side of the
        earlier median (a lane that did not change has that by chance about once in fifty)."""
        if self.count < RECENT + RECENT_BEFORE:
            return 1.0
        column = 1 if working else 0
        arrivals = list(self._order)
        before = sorted(row[column] for row in arrivals[:-RECENT])
        recent = sorted(row[column] for row in arrivals[-RECENT:])
        usual = quantile(before, 0.5)
        slower = sum(hours > usual for hours in recent)
        if usual <= 0 or max(slower, RECENT - slower) < RECENT_AGREE:
            return 1.0
        pace = quantile(recent, 0.5) / usual
        if abs(pace - 1) < RECENT_CHANGE:
            return 1.0
        low, high = RECENT_BOUNDS
        return min(max(pace, low), high)

    @property
    def skips_weekends(self) -> bool:
        return self.count >= MIN_DELIVERIES and self.weekend_deliveries < WEEKEND_SHARE * self.count


Profiles = Mapping[tuple[str, str], Samples]


def record_delivery(
    profiles: dict[tuple[str, str], Samples], lane: Lane, delivered_at: datetime, anchors: Mapping[str, datetime | None]
) -> None:
    """Add one delivery to every group of its lane, once per anchor it has a time for."""
    weekend = is_weekend(delivered_at)
    for anchor, start in anchors.items():
        if start is None or start > delivered_at:
            continue
        wall = hours_between(start, delivered_at, working=False)
        working = hours_between(start, delivered_at, working=True)
        for key, _ in lane.groups():
            profiles.setdefault((key, anchor), Samples()).add(wall, working, weekend)


@dataclass(frozen=True)
class Situation:
    """What was known of one shipment at ``as_of``."""

    shipment_id: int
    lane: Lane
    as_of: datetime
    stage: str | None
    picked_up_at: datetime | None = None
    out_for_delivery_at: datetime | None = None
    last_scan_at: datetime | None = None
    last_scan_place: str = ""
    promised_at: datetime | None = None
    carrier_estimate_at: datetime | None = None


class Basis:
    MODEL = "model"
    CARRIER = "carrier_estimate"
    NONE = "none"


@dataclass(frozen=True)
class Estimate:
    stage: str | None
    basis: str
    p10: datetime | None = None
    p50: datetime | None = None
    p90: datetime | None = None
    late_probability: float | None = None
    deliveries: int = 0
    reasons: tuple[str, ...] = ()


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolating between the two nearest."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def hours_text(hours: float) -> str:
    return f"{hours / 24:.1f} d" if abs(hours) >= 48 else f"{hours:.0f} h"


def estimate(situation: Situation, profiles: Profiles) -> Estimate:
    """The predicted delivery of one shipment from the groups of its lane, narrowest first."""
    if situation.stage is None:
        return _carrier_fallback(situation, ["Not picked up yet: transit starts at pickup."])
    anchor, start = _anchor(situation)
    tried = []
    for key, words in situation.lane.groups():
        samples = profiles.get((key, anchor))
        if samples is None:
            tried.append(f"{words}: none")
            continue
        working = samples.skips_weekends
        pace = samples.recent_pace(working=working) if key.startswith(LANE) else 1.0
        spent = max(hours_between(start, situation.as_of, working=working), 0.0)
        ordered = samples.working if working else samples.wall
        remaining = ordered[bisect_right(ordered, spent / pace) :]
        if len(remaining) >= MIN_DELIVERIES:
            read = _Read(remaining, samples, words, working, pace)
            result = _from_samples(situation, (anchor, start), read, tried)
            if key != ALL or not _outside(situation.carrier_estimate_at, result):
                return result
            tried.append(f"{words}: the carrier's estimate is outside their range")
            break
        taken = f"{len(remaining)} of {samples.count} took this long" if spent > 0 else str(len(remaining))
        tried.append(f"{words}: {taken}")
        if key.startswith(CARRIER) and samples.count >= MIN_DELIVERIES:
            break  # outlived its own carrier's history: other carriers' deliveries say nothing of it
    return _carrier_fallback(
        situation, [f"Too few deliveries to predict ({'; '.join(tried)}; {MIN_DELIVERIES} needed)."]
    )


def _outside(moment: datetime | None, result: Estimate) -> bool:
    """Whether the carrier's own estimate lies outside the range read from every carrier's
    deliveries: a parcel history says nothing of a container ship."""
    return moment is not None and not result.p10 <= moment <= result.p90


def _anchor(situation: Situation) -> tuple[str, datetime]:
    if situation.stage == Stage.OUT_FOR_DELIVERY and situation.out_for_delivery_at:
        return Anchor.OUT_FOR_DELIVERY, situation.out_for_delivery_at
    return Anchor.PICKUP, situation.picked_up_at or situation.as_of


@dataclass(frozen=True)
class _Read:
    """What a prediction reads from one group: the deliveries that took longer than the time
    already spent (in the group's own times, before the lane's recent pace scales them)."""

    remaining: list[float]
    samples: Samples
    words: str
    working: bool
    pace: float


def _from_samples(situation: Situation, anchored: tuple[str, datetime], read: _Read, tried: list[str]) -> Estimate:
    anchor, start = anchored
    remaining, samples, words, working, pace = read.remaining, read.samples, read.words, read.working, read.pace

    def at(q: float) -> datetime:
        return add_hours(start, pace * quantile(remaining, q), working=working)

    p10, p50, p90 = at(0.1), at(0.5), at(0.9)
    late = None
    if situation.promised_at is not None:
        promised = hours_between(start, situation.promised_at, working=working)
        later = len(remaining) - bisect_right(remaining, promised / pace)
        # Half a delivery each way keeps the probability off 0 and 1 on a small group.
        late = (later + 0.5) / (len(remaining) + 1)
    ordered = samples.working if working else samples.wall
    since = "out for delivery" if anchor == Anchor.OUT_FOR_DELIVERY else "pickup"
    typical, long = hours_text(quantile(ordered, 0.5)), hours_text(quantile(ordered, 0.9))
    reasons = [f"{words[0].upper()}{words[1:]}: {samples.count} deliveries, from {since} p50 {typical}, p90 {long}."]
    if pace != 1.0:
        reasons.append(_pace_words(situation.lane, pace))
    if tried:
        reasons.append(f"Narrower groups had too few deliveries ({'; '.join(tried)}).")
    reasons.append(_where_now(situation))
    if len(remaining) < samples.count:
        reasons.append(f"{len(remaining)} of those deliveries were still under way after as long as this one.")
    if working:
        reasons.append(
            f"Weekends not counted: {samples.weekend_deliveries} of {samples.count} deliveries were at a weekend."
        )
    reasons.extend(_promise_and_estimate(situation, p50))
    return Estimate(
        stage=situation.stage,
        basis=Basis.MODEL,
        p10=p10,
        p50=p50,
        p90=p90,
        late_probability=late,
        deliveries=len(remaining),
        reasons=tuple(reasons),
    )


def _pace_words(lane: Lane, pace: float) -> str:
    change = round(abs(pace - 1) * 100)
    side = "slower" if pace > 1 else "faster"
    bounded = " (counted at most that)" if pace in RECENT_BOUNDS else ""
    return (
        f"{lane.carrier} on {lane.origin or '?'}→{lane.destination or '?'}: last {RECENT} deliveries "
        f"{change}% {side} than usual{bounded}; the range is scaled so."
    )


def _ago(moment: datetime, as_of: datetime) -> str:
    return hours_text((as_of - moment).total_seconds() / 3600)


def _where_now(situation: Situation) -> str:
    now = situation.as_of
    if situation.stage == Stage.OUT_FOR_DELIVERY and situation.out_for_delivery_at:
        return f"Out for delivery since {_ago(situation.out_for_delivery_at, now)} ago."
    if situation.stage == Stage.IN_TRANSIT and situation.last_scan_at:
        place = f" {situation.last_scan_place}" if situation.last_scan_place else ""
        return f"Last scan{place} {_ago(situation.last_scan_at, now)} ago."
    if situation.picked_up_at:
        return f"Picked up {_ago(situation.picked_up_at, now)} ago."
    return "Pickup time not known: counted from now."


def _promise_and_estimate(situation: Situation, p50: datetime | None) -> list[str]:
    reasons = []
    now = situation.as_of
    if situation.promised_at is not None:
        if situation.promised_at >= now:
            reasons.append(f"Promised in {hours_text((situation.promised_at - now).total_seconds() / 3600)}.")
        else:
            reasons.append(f"Promised {_ago(situation.promised_at, now)} ago.")
    if situation.carrier_estimate_at is not None and p50 is not None:
        gap = (situation.carrier_estimate_at - p50).total_seconds() / 3600
        if abs(gap) < 1:
            reasons.append("The carrier's estimate is within the hour of our p50.")
        else:
            side = "after" if gap > 0 else "before"
            reasons.append(f"The carrier's estimate is {hours_text(abs(gap))} {side} our p50.")
    return reasons


def _carrier_fallback(situation: Situation, reasons: list[str]) -> Estimate:
    eta = situation.carrier_estimate_at
    if eta is None:
        return Estimate(stage=situation.stage, basis=Basis.NONE, reasons=(*reasons, "No carrier estimate either."))
    late = None
    if situation.promised_at is not None:
        # A point estimate says late or not, nothing in between; the at-risk rule reads it so.
        late = 1.0 if eta > situation.promised_at else 0.0
    return Estimate(
        stage=situation.stage,
        basis=Basis.CARRIER,
        p50=eta,
        late_probability=late,
        reasons=(*reasons, "Showing the carrier's estimate.", *_promise_and_estimate(situation, None)),
    )
