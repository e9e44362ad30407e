"""Benchmarks: apply throughput, query counts and memory; prints a table and writes JSON.

Runs on its own database (``BENCH_DATABASE_URL``, default a fresh SQLite file under
``var/bench/``), so it never touches the demo's data.
"""

import json
import os
import random
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
OUT.mkdir(parents=True, exist_ok=True)
DB_FILE = OUT / "bench.sqlite3"
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{DB_FILE}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controltower.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from apps.timeline.events import parse_events  # noqa: E402
from apps.timeline.services import apply_events  # noqa: E402

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def story(n: int) -> list[dict]:
    """Eight events of one order's life, from creation to invoice."""
    so, sh, tr = f"SO-{n}", f"SH-{n}", f"1Z{n:08d}"

    def ev(suffix: str, kind: str, hours: int, *refs: tuple[str, str], **fields) -> dict:
        return {
            "event_id": f"{so}-{suffix}",
            "kind": kind,
            "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
            "references": [{"kind": k, "value": v} for k, v in refs],
            **fields,
        }

    return [
        ev("c", "order.created", 0, ("order", so), ("po", f"PO-{n}"), lines=[{"sku": "A", "quantity": "2"}]),
        ev("r", "order.released", 1, ("order", so)),
        ev("p", "order.picked", 3, ("po", f"PO-{n}")),
        ev("m", "shipment.manifested", 5, ("shipment", sh), ("tracking", tr), ("order", so)),
        ev("t", "shipment.in_transit", 9, ("tracking", tr)),
        ev("o", "shipment.out_for_delivery", 30, ("tracking", tr)),
        ev("d", "shipment.delivered", 34, ("tracking", tr)),
        ev("i", "invoice.generated", 40, ("invoice", f"INV-{n}"), ("order", so), amount="20"),
    ]


def reset_database() -> None:
    if connection.vendor == "sqlite" and DB_FILE.exists():
        connection.close()
        DB_FILE.unlink()
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def measure(name: str, batches: list[list[dict]]) -> dict:
    events = [parse_events(batch) for batch in batches]
    count = sum(len(batch) for batch in events)
    tracemalloc.start()
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        for batch in events:
            apply_events(batch)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "case": name,
        "events": count,
        "batches": len(batches),
        "seconds": round(seconds, 3),
        "events_per_second": round(count / seconds),
        "queries": len(queries),
        "queries_per_batch": round(len(queries) / len(batches), 1),
        "peak_memory_mb": round(peak / 2**20, 1),
    }


def cases() -> list[tuple[str, list[list[dict]]]]:
    rng = random.Random(7)
    in_order = [e for n in range(1000) for e in story(n)]
    shuffled = [e for n in range(1000, 2000) for e in story(n)]
    rng.shuffle(shuffled)
    return [
        ("8k events in order, batches of 500", [in_order[i : i + 500] for i in range(0, len(in_order), 500)]),
        ("8k events shuffled (parking), batches of 500", [shuffled[i : i + 500] for i in range(0, len(shuffled), 500)]),
        ("8k duplicates of applied events", [in_order[i : i + 500] for i in range(0, len(in_order), 500)]),
        ("one event at a time (100)", [[e] for n in range(2000, 2013) for e in story(n)][:100]),
    ]


def main() -> int:
    reset_database()
    connection.force_debug_cursor = False
    results = [measure(name, batches) for name, batches in cases()]
    columns = list(results[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in results)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in results:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    path = OUT / "results.json"
    meta = {"database": connection.vendor, "python": sys.version.split()[0], "at": datetime.now(UTC).isoformat()}
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
