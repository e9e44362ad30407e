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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
OUT.mkdir(parents=True, exist_ok=True)
DB_FILE = OUT / "bench.sqlite3"
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{DB_FILE}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controltower.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("STATIC_MANIFEST", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.pop("REDIS_URL", None)
os.environ.setdefault("NETWORK_TRUSTED_TARGETS", "http://127.0.0.1")  # the outbound bench's receiver

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from apps.timeline.events import parse_events  # noqa: E402
from apps.timeline.services import apply_events  # noqa: E402
from bench.parsers import parser_cases  # noqa: E402

T0 = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass
class Measurement:
    seconds: float = 0.0
    queries: int = 0
    peak: int = 0  # bytes

    def __call__(self, execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        """Count a query: wraps the connection (Django's query log keeps only the last 9,000, so
        differences of its length stop counting once it is full)."""
        self.queries += 1
        return execute(sql, params, many, context)


@contextmanager
def measuring() -> Iterator[Measurement]:
    """Time, queries and peak traced memory of the block (filled in when it ends)."""
    measurement = Measurement()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with connection.execute_wrapper(measurement):
            yield measurement
    finally:
        measurement.seconds = time.perf_counter() - started
        measurement.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


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
    with measuring() as measured:
        for batch in events:
            apply_events(batch)
    return _row(name, measured, events=sum(len(batch) for batch in events), batches=len(batches))


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


def ship_notice(items: int, orders: int) -> bytes:
    """One X12 856 for a full truck: ``items`` item lines spread over ``orders`` orders."""
    body = ["ST*856*0001", "BSN*00*BENCH-ASN*20261101*0800*0001", "HL*1**S", "TD5**2*BNCH*M", "REF*2I*1ZBENCH0001"]
    body.append("DTM*011*20261101*0800")
    hl = 1
    for order in range(orders):
        hl += 1
        order_hl = hl
        body += [f"HL*{order_hl}*1*O", f"PRF*PO-{order}"]
        for item in range(items // orders):
            hl += 1
            body += [f"HL*{hl}*{order_hl}*I", f"LIN*{item + 1}*SK*SKU-{item % 500}", "SN1**2*EA"]
    body.append(f"SE*{len(body) + 1}*0001")
    isa = "ISA*00*          *00*          *ZZ*BENCHWMS       *ZZ*CTRLTOWER      *261101*0800*U*00401*000000001*0*P*>"
    segments = [isa, "GS*SH*BENCHWMS*CTRLTOWER*20261101*0800*1*X*004010", *body, "GE*1*1", "IEA*1*000000001"]
    return ("~\n".join(segments) + "~\n").encode()


def status_feed(rows: int) -> bytes:
    lines = ["tracking,status,occurred_at"]
    lines += [
        f"1Z{n % 1000:08d},in transit,2026-11-0{1 + n % 5}T{n % 24:02d}:{n % 60:02d}:00+00:00" for n in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def inventory_feed(rows: int) -> bytes:
    lines = ["sku,quantity,occurred_at"] + [f"SKU-{n},{n % 97},2026-11-01T06:00:00+00:00" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def measure_message(name: str, partner_code: str, fmt: str, body: bytes) -> dict:
    from apps.ingest.models import InboundMessage
    from apps.ingest.services import message_process, message_receive
    from apps.partners.models import Partner

    partner = Partner.objects.get(code=partner_code)
    message, _ = message_receive(body=body, source="file", partner=partner, format=fmt, enqueue=False)
    with measuring() as measured:
        message_process(message.pk)
    message = InboundMessage.objects.get(pk=message.pk)
    if message.status != "processed":
        raise RuntimeError(f"{name}: {message.status} {message.error} {message.warnings[:3]}")
    return _row(name, measured, events=message.events_count)


def ingest_cases() -> list[dict]:
    from apps.partners.models import Channel, Partner
    from apps.partners.services import partner_upsert

    partner_upsert(code="BNCHWMS", kind="warehouse", edi_ids=[("ZZ", "BENCHWMS")])
    carrier, _ = partner_upsert(code="BNCH", kind="carrier")
    Channel.objects.get_or_create(
        partner=carrier,
        code="status",
        defaults={"format": "csv", "mapping_overrides": {"csv": {"feed": "shipment_status"}}},
    )
    warehouse = Partner.objects.get(code="BNCHWMS")
    Channel.objects.get_or_create(
        partner=warehouse,
        code="stock",
        defaults={"format": "csv", "mapping_overrides": {"csv": {"feed": "inventory_snapshot"}}},
    )
    Channel.objects.get_or_create(partner=warehouse, code="asn", defaults={"format": "x12"})
    return [
        measure_message("ingest: X12 856 with 10,000 item lines", "BNCHWMS", "x12", ship_notice(10_000, 50)),
        measure_message("ingest: CSV status feed, 20,000 rows", "BNCH", "csv", status_feed(20_000)),
        measure_message("ingest: CSV inventory snapshot, 100,000 rows", "BNCHWMS", "csv", inventory_feed(100_000)),
    ]


def inventory_cases(lines: int = 100_000, part: int = 5000) -> list[dict]:
    """A warehouse's full snapshot in parts of ``part`` lines, applied two parts a batch as ingest
    does (peak memory target: under 50 MB), then one movement on top of it (its query count does
    not grow with the snapshot)."""
    from apps.partners.services import partner_upsert

    partner_upsert(code="BNCHINV", kind="warehouse")
    at = T0.isoformat()
    parts = [
        {
            "event_id": f"bench-stock-{start}",
            "kind": "inventory.snapshot",
            "occurred_at": at,
            "lines": [{"sku": f"INV-{n}", "quantity": str(n % 97)} for n in range(start, min(start + part, lines))],
            "attributes": {"warehouse": "BNCHINV", "snapshot": "full"},
        }
        for start in range(0, lines, part)
    ]
    snapshot = measure(
        f"inventory: {lines:,}-line full snapshot, applied", [parts[i : i + 2] for i in range(0, len(parts), 2)]
    )
    movement = {
        "event_id": "bench-move-1",
        "kind": "inventory.adjusted",
        "occurred_at": (T0 + timedelta(hours=1)).isoformat(),
        "lines": [{"sku": "INV-5", "quantity": "-1"}],
        "attributes": {"warehouse": "BNCHINV"},
    }
    return [snapshot, measure(f"inventory: one movement after {lines:,} positions", [[movement]])]


def queue_cases(count: int) -> list[dict]:
    """The finance queue with ``count`` open cases: the first page, a filtered page, a late page."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from apps.exceptions.models import ExceptionCase, ExceptionRule

    rule, _ = ExceptionRule.objects.get_or_create(
        code="bench_rule", defaults={"title": "Bench rule", "queue": "finance"}
    )
    now = timezone.now()
    ExceptionCase.objects.bulk_create(
        (
            ExceptionCase(
                rule=rule,
                queue="finance",
                severity="medium",
                subject_type="order",
                subject_id=n,
                summary=f"Bench case {n}",
                amount_at_risk=n % 1000,
                opened_at=now,
                due_at=now,
            )
            for n in range(count)
        ),
        batch_size=2000,
    )
    user = get_user_model().objects.create_superuser("bench", password=None)
    client = Client()
    client.force_login(user)
    results = []
    for name, params in (
        ("first page", {}),
        ("filtered (min amount 900, largest first)", {"min_amount": "900", "sort": "amount"}),
        ("page 150", {"page": "150"}),
    ):
        with measuring() as measured:
            response = client.get("/queues/finance/", params)
        if response.status_code != 200:
            raise RuntimeError(f"queue page {name}: {response.status_code}")
        results.append(_row(f"queue of {count:,} open cases: {name}", measured))
    return results


def _row(case: str, measured: Measurement, *, events: int = 0, batches: int = 1) -> dict:
    return {
        "case": case,
        "events": events,
        "batches": batches,
        "seconds": round(measured.seconds, 3),
        "events_per_second": round(events / measured.seconds) if events else 0,
        "queries": measured.queries,
        "queries_per_batch": round(measured.queries / batches, 1),
        "peak_memory_mb": round(measured.peak / 2**20, 1),
    }


def kpi_cases(days: int = 90, combinations: int = 20) -> list[dict]:
    """KPI refresh over every order applied so far, then the dashboard over a large rollup table."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apps.dashboards.models import Metric, Rollup
    from apps.dashboards.services import kpis_refresh
    from apps.partners.models import Partner
    from apps.timeline.models import Order

    ids = list(Order.objects.values_list("id", flat=True))
    chunks = [ids[start : start + 500] for start in range(0, len(ids), 500)]
    with measuring() as measured:
        for chunk in chunks:
            kpis_refresh(order_ids=chunk)
    results = [_row(f"KPI refresh of {len(ids):,} orders (500 a task)", measured, batches=len(chunks))]

    carriers = [Partner.objects.create(code=f"BCAR{n}", name="Bench carrier", kind="carrier") for n in range(10)]
    customers = [Partner.objects.create(code=f"BCUS{n}", name="Bench customer", kind="customer") for n in range(10)]
    first = T0.date() - timedelta(days=days)
    Rollup.objects.bulk_create(
        (
            Rollup(
                metric=metric,
                day=first + timedelta(days=day),
                partner=carriers[n % 10],
                customer=customers[(n * 3) % 10],
                region=f"R{n % 4}",
                count=10,
                hits=7,
                seconds_sum=36000.0,
                histogram=[0] * 12 + [10] + [0] * 10,
            )
            for metric in Metric.values
            for day in range(days)
            for n in range(combinations)
        ),
        batch_size=5000,
    )
    rows = Rollup.objects.count()
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("bench-kpi", password=None))
    period = {"period": "custom", "start": str(first), "end": str(T0.date())}
    for name, params in (("all partners", {}), ("one carrier, by week", {"partner": "BCAR3", "grain": "week"})):
        with measuring() as measured:
            response = client.get("/dashboards/", {**period, **params})
        if response.status_code != 200:
            raise RuntimeError(f"dashboard {name}: {response.status_code}")
        results.append(_row(f"SLA dashboard, {days} days of {rows:,} rollup rows: {name}", measured))
    return results


def outbound_cases(orders: int = 1000) -> tuple[list[dict], list[dict]]:
    """The outbox's cost inside apply, then sending what it queued to a receiver on loopback (see
    bench/outbound.py): rows for the main table, and the outbound table."""
    from apps.outbound.models import Subscription
    from apps.partners.models import Partner
    from bench.outbound import outbound_send_cases, start_receiver
    from controltower.celery import app as celery_app

    receiver, url = start_receiver()
    erp = Partner.objects.create(code="BENCH-ERP", name="Bench ERP", kind=Partner.Kind.ERP)
    for name, kinds in (("shipments", ["shipment.*"]), ("orders", ["order.*"]), ("all", ["*"])):
        Subscription.objects.create(partner=erp, name=name, target_url=url, event_kinds=kinds)
    # Deliveries are queued, not sent, while the outbox is measured: the sending is measured on its
    # own (and in the sustained run, by a worker process taking the drains through Redis).
    celery_app.conf.task_always_eager = False
    try:
        events = [e for n in range(10_000, 10_000 + orders) for e in story(n)]
        batches = [events[i : i + 500] for i in range(0, len(events), 500)]
        results = [measure(f"{len(events) // 1000}k events, outbox to 3 subscriptions", batches)]
        sending = outbound_send_cases(erp, story, url)
    finally:
        celery_app.conf.task_always_eager = True
        receiver.terminate()
    # The cases after this one measure ingestion alone, not sends to a receiver that is gone.
    Subscription.objects.filter(partner=erp).delete()
    return results, sending


def main() -> int:
    reset_database()
    if os.environ.get("BENCH_ONLY") == "outbound":
        return outbound_only()
    results = [measure(name, batches) for name, batches in cases()]
    outbox, sending = outbound_cases()
    results += outbox
    results += ingest_cases()
    results += inventory_cases()
    results += queue_cases(10_000)
    results += kpi_cases()
    _print_table(results)
    print()
    _print_table(sending)
    # Parsers on adversarial documents, from 1 MB up to the message size limit (see bench/parsers.py).
    parsers = parser_cases(settings.INGEST_MAX_MESSAGE_BYTES)
    print()
    _print_table(parsers)
    path = OUT / "results.json"
    meta = {"database": connection.vendor, "python": sys.version.split()[0], "at": datetime.now(UTC).isoformat()}
    path.write_text(json.dumps({"meta": meta, "results": results, "outbound": sending, "parsers": parsers}, indent=2))
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 0


def outbound_only() -> int:
    """``BENCH_ONLY=outbound``: the outbound cases alone, for a quick profile."""
    outbox, sending = outbound_cases()
    _print_table(outbox)
    print()
    _print_table(sending)
    return 0


def _print_table(rows: list[dict]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


if __name__ == "__main__":
    sys.exit(main())
