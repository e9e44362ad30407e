"""The outbound bench's sustained case, producing side: applies events at a steady rate in a process
of its own, as an ingest worker does, each tick's events in one transaction whose commit queues the
drain through the broker for the outbound worker.

``python -m bench.outbound_producer EVENTS_FILE RATE SECONDS``: the events (a JSON list of canonical
events) are applied ``RATE`` a second for ``SECONDS``, a commit every ``OUTBOUND_BENCH_TICK``
seconds (0.5); prints ``{"events": n, "seconds": s}``.
Django is set up from the environment the bench gives it (database, Redis, queued tasks).
"""

import json
import os
import sys
import time
from pathlib import Path

# Events committed together: an ingest worker applies a message's events in one transaction.
TICK_SECONDS = float(os.environ.get("OUTBOUND_BENCH_TICK") or 0.5)


def produce(events: list[dict], rate: int, seconds: int) -> dict:
    from django.db import transaction

    from apps.timeline.events import parse_events
    from apps.timeline.services import apply_events

    per_tick = max(int(rate * TICK_SECONDS), 1)
    started = time.monotonic()
    applied = 0
    for tick, start in enumerate(range(0, min(rate * seconds, len(events)), per_tick)):
        batch = parse_events(events[start : start + per_tick])
        with transaction.atomic():
            apply_events(batch)
        applied += len(batch)
        time.sleep(max(started + (tick + 1) * TICK_SECONDS - time.monotonic(), 0))
    return {"events": applied, "seconds": time.monotonic() - started}


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controltower.settings")
    import django

    django.setup()
    events_file, rate, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(produce(json.loads(events_file.read_text()), rate, seconds)))  # noqa: T201 - the result
    return 0


if __name__ == "__main__":
    sys.exit(main())
