"""The garbage collector tuned for processes that apply events in batches.

A batch of 2,000 events makes hundreds of thousands of short-lived objects (rows, model
instances, events) that reference counting frees as soon as they are done with. CPython's cyclic
collector runs anyway every 700 new objects and walks every survivor of its generation each
time: about a fifth of an ingest's CPU. Pipeline processes run it every 50,000 instead; the
memory it holds back is a batch's worth at most.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

BATCH_THRESHOLD = 50_000  # new objects between two collections of the youngest generation


def tune_for_batches() -> None:
    """For a whole process that applies events (a worker): also leave everything alive at start
    (modules, settings, caches) out of every later collection."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(BATCH_THRESHOLD, middle, oldest)


@contextmanager
def tuned_for_batches() -> Iterator[None]:
    """The batch threshold for the block (a command run in another process), then as it was."""
    before = gc.get_threshold()
    gc.set_threshold(max(BATCH_THRESHOLD, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
