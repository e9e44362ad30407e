"""Messages stored by a web process are queued for processing together, a few milliseconds later.

At a thousand webhooks a second, one broker message per webhook would cost more than storing it.
Here each process gathers the messages it stored for ``ENQUEUE_BATCH_SECONDS`` and queues them
as one task per queue (``enqueue_processing``), from a background thread: the answer to the sender
never waits on the broker. The messages are already in the database when gathered; one whose
process dies before the flush is found by the periodic sweep of stuck messages.
"""

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)


class Batcher:
    """Gathers items and hands them to ``flush`` at most every ``interval`` seconds."""

    def __init__(self, flush: Callable[[list[Any]], None], interval: Callable[[], float]) -> None:
        self._flush = flush
        self._interval = interval
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, items: Iterable[Any]) -> None:
        with self._lock:
            self._items.extend(items)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="enqueue-batcher", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        if items:
            self._flush(items)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self._interval())  # gather what arrives meanwhile
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                logger.exception("queuing stored messages failed; the sweep of stuck messages will")


def batcher_for(flush: Callable[[list[Any]], None], interval: Callable[[], float]) -> Batcher:
    batcher = Batcher(flush, interval)
    atexit.register(batcher.flush)  # a process that stops cleanly queues what it gathered
    return batcher
