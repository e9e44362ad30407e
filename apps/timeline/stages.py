"""Where the pipeline's time goes, per stage, in this process.

Each stage of receive → parse → apply → react adds its wall time here. The counters are cheap
(one ``perf_counter`` pair per batch, not per event), so they are always on; the benchmark reads
them to print the per-stage split, and an operator can read them from a shell on a worker.
"""

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

_seconds: Counter[str] = Counter()


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Add the block's wall time to ``stage`` (nested stages are counted in both)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _seconds[stage] += time.perf_counter() - started


def stage_seconds() -> dict[str, float]:
    """Seconds spent in each stage since the process started or the last ``stages_reset``."""
    return dict(_seconds)


def stages_reset() -> None:
    _seconds.clear()
