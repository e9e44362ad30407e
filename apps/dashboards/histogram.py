"""Duration histograms with fixed buckets, so rollups add up and percentiles come from sums.

A percentile is reported as the upper bound of the bucket it falls in ("p95 ≤ 4 h"), as
Prometheus does without interpolation: exact enough to compare partners, and mergeable.
"""

from bisect import bisect_left
from collections.abc import Iterable, Sequence

MINUTE, HOUR, DAY = 60, 3600, 86400
BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30,
    MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
    HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 12 * HOUR,
    DAY, 2 * DAY, 3 * DAY, 5 * DAY, 7 * DAY, 14 * DAY, 30 * DAY,
)  # fmt: skip
"""Upper bounds in seconds; one more bucket holds everything longer than the last."""


def bucket_of(seconds: float) -> int:
    """The index of the bucket a duration falls in (negative durations count as zero)."""
    return bisect_left(BUCKETS, max(seconds, 0))


def empty() -> list[int]:
    return [0] * (len(BUCKETS) + 1)


def add(histogram: list[int], other: Sequence[int], sign: int = 1) -> list[int]:
    """``histogram`` plus (or minus) ``other``, element by element; either may be empty."""
    if not any(other):
        return list(histogram)
    merged = list(histogram) or empty()
    for index, count in enumerate(other):
        merged[index] += sign * count
    return merged


def of(values: Iterable[float]) -> list[int]:
    histogram = empty()
    for value in values:
        histogram[bucket_of(value)] += 1
    return histogram


def percentile(histogram: Sequence[int], fraction: float) -> float | None:
    """The upper bound of the bucket holding the given fraction of values; None if empty.

    Above the last bound the answer is ``inf``.
    """
    total = sum(histogram)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if count and seen >= rank:
            return BUCKETS[index] if index < len(BUCKETS) else float("inf")
    return float("inf")
