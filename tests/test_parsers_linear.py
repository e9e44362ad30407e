"""Every parser works in time linear in its input, on the documents that hit its worst cases.

Each shape of :mod:`bench.parsers` (X12, EDIFACT, CSV, canonical JSON, JSON mapping and every
aggregator) is parsed at n and at 4n bytes in the same run, the pipeline's whole work (detection,
sender ids, parsing); the time ratio must stay under 6 where linear work gives 4 and quadratic 16.
A ratio, not a time limit: n grows until parsing it takes long enough to be measured, and each
size counts the best of a few runs in CPU time, which other processes on a busy machine disturb
less, with the garbage collector off (see ``bench.parsers.seconds``).
"""

import math
import time

import pytest

from bench.parsers import SHAPES, Shape, seconds

# A ratio of timings: it runs alone, after the tests that run side by side (see the Makefile).
pytestmark = pytest.mark.serial
RATIO_LIMIT = 6
MIN_SECONDS = 0.1  # shorter runs let a shared machine's noise decide the ratio
FIRST_SIZE = 16 * 1024
# The largest document measured. A cheap parse of a larger one builds lists over glibc's 32 MiB
# limit for reusing freed memory: they are mapped afresh at every run, page faults and all, while
# the smaller document's are reused, and the ratio measures the allocator (8 for a linear parse).
MAX_SIZE = 2 * 2**20
MAX_RUNS = 40


def _best(shape: Shape, body: bytes, runs: int) -> float:
    return min(seconds(shape, body, clock=time.process_time, collect=False) for _ in range(runs))


def _size(shape: Shape) -> int:
    """The smallest doubling of FIRST_SIZE whose parsing takes MIN_SECONDS, or a quarter of MAX_SIZE."""
    size = FIRST_SIZE
    while 4 * size < MAX_SIZE and _best(shape, shape.build(size), 1) < MIN_SECONDS:
        size *= 2
    return size


def _ratio(shape: Shape, size: int, runs: int) -> tuple[float, float]:
    small, large = shape.build(size), shape.build(4 * size)
    return _best(shape, small, runs), _best(shape, large, runs)


def _runs(shape: Shape, size: int) -> int:
    """Enough runs to add up to MIN_SECONDS: a shape that parses its documents in a few
    milliseconds is timed many times, so that its best run, not one slow moment, is compared."""
    once = _best(shape, shape.build(size), 1)
    return min(MAX_RUNS, max(3, math.ceil(MIN_SECONDS / max(once, 1e-6))))


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_parsing_time_grows_linearly(shape: Shape):
    size = _size(shape)
    runs = _runs(shape, size)
    small, large = _ratio(shape, size, runs=runs)
    if large / small >= RATIO_LIMIT:  # another process took the CPU: measure again, longer
        small, large = _ratio(shape, size, runs=2 * runs)

    assert large / small < RATIO_LIMIT, (
        f"{shape.name}: {size:,} bytes in {small * 1000:.0f} ms, {4 * size:,} bytes in {large * 1000:.0f} ms "
        f"(ratio {large / small:.1f})"
    )
