"""Scale benchmark: the real ingest pipeline over realistic order lives, on PostgreSQL and Redis.

``make bench-scale ORDERS=20000`` (or ``python -m bench.scale``) recreates its own database, writes
partner files of canonical JSON events (see ``bench/histories.py``) and measures:

- ``sync``: the ``ingest --sync`` command in this process over ORDERS orders, with the per-stage
  split of ``apps.timeline.stages``, queries and peak memory;
- ``copy``: the same events written with PostgreSQL ``COPY``, the floor any pipeline sits above;
- ``second``: a second, disjoint set of ORDERS orders on top of the first (cost grows with data?);
- ``workers``: a third set stored by ``ingest`` and processed by WORKERS real Celery workers;
- ``webhooks``: 1,000 single-event API messages, from the last 202 until all are applied;
- ``flood``: latency of a delivery while 20,000 carrier scans flood the API, workers split by
  queue as in docker-compose.yml.

Environment: ``ORDERS`` (20000), ``WORKERS`` (2), ``SCALE_CASES`` (comma-separated, default all),
``BENCH_DATABASE_URL`` (PostgreSQL only; the database is dropped and created again),
``BENCH_REDIS_URL`` or ``REDIS_URL`` (default redis://127.0.0.1:6379/3), ``SCALE_TIMEOUT``
(seconds for each wait; default grows with the events waited for). Figures are printed as one
table and written to ``var/bench/scale-<ORDERS>.json``.
"""

import fcntl
import json
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from io import StringIO
from itertools import groupby
from pathlib import Path
from typing import IO, Any

import environ
import kombu.exceptions
import psycopg
import redis
from psycopg import sql

from bench.autovacuum import AutoVacuum
from bench.histories import CARRIERS, PARTNER_KINDS, HistorySpec, Summary, read_events, read_manifest, write_histories
from bench.workers import Worker, WorkerFailed, check_alive, peaks_mb, record_peaks, start_worker, stop_worker

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
DATA = OUT / "scale"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/controltower_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/3"
CASES = ("sync", "copy", "second", "workers", "webhooks", "flood")
WORKER_CASES = {"workers", "webhooks", "flood"}
QUEUES = ("critical", "default", "bulk")
WEBHOOK_MESSAGES = 1000
FLOOD_MESSAGES, FLOOD_EVENTS = 200, 100
LATENCY_SAMPLES = 20
SAMPLE_INTERVAL = 0.5  # seconds between two latency probes
POLL = 0.02
PROGRESS_EVERY = 15.0  # seconds between progress lines
GROUP_FILES = 20  # consecutive files of one partner go to one ``ingest`` call


class BenchError(RuntimeError):
    """A case could not be measured; the message says why."""


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not a whole number") from None
    if number < 1:
        raise SystemExit(f"{name} must be at least 1, not {number}")
    return number


def _cases() -> list[str]:
    wanted = [name.strip() for name in os.environ.get("SCALE_CASES", ",".join(CASES)).split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(CASES))
    if unknown:
        raise SystemExit(f"SCALE_CASES: unknown case(s) {', '.join(unknown)}; choose among {', '.join(CASES)}")
    if "second" in wanted and "sync" not in wanted:
        print("SCALE_CASES: `second` loads on top of the first set, so `sync` runs too")
        wanted.append("sync")
    return [name for name in CASES if name in wanted]


def _database(url: str) -> dict[str, Any]:
    """The bench database's settings; refuses anything but a PostgreSQL database of its own."""
    config = environ.Env.db_url_config(url)
    name = str(config.get("NAME") or "")
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit(
            f"BENCH_DATABASE_URL={url!r}: the scale benchmark runs on PostgreSQL only "
            f"(SQLite cannot run the worker cases and says nothing about scale); "
            f"use e.g. {DEFAULT_DATABASE_URL}"
        )
    if name == "controltower_ci" or name.startswith("test_") or "bench" not in name:
        raise SystemExit(
            f"BENCH_DATABASE_URL names database {name!r}: the benchmark drops and recreates its database, "
            f"so it only uses one whose name contains 'bench' (never controltower_ci or test_*)"
        )
    return config


ORDERS = _int_env("ORDERS", 20_000)
WORKERS = _int_env("WORKERS", 2)
SELECTED = _cases()
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
DATABASE = _database(DATABASE_URL)
REDIS_URL = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
# Events up to the start of today: a run is the same all day long, whatever the hour.
ANCHOR = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

os.environ.update(
    {
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        # This process applies in place (sync ingest and its reactions); worker cases switch it off.
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "DJANGO_SETTINGS_MODULE": "controltower.settings",
    }
)
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("STATIC_MANIFEST", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.db import DatabaseError, connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402

from apps.ingest.models import InboundMessage  # noqa: E402
from apps.partners.models import Partner  # noqa: E402
from apps.partners.services import api_token_create  # noqa: E402
from apps.timeline.models import Milestone, MilestoneReport, Order, ParkedEvent, Shipment  # noqa: E402
from apps.timeline.stages import stage_seconds, stages_reset  # noqa: E402
from controltower.celery import app as celery_app  # noqa: E402

Figures = dict[str, Any]


# --- database, partners, Redis --------------------------------------------------------------------


def pg_connect(dbname: str, **options: Any) -> psycopg.Connection:
    return psycopg.connect(
        host=DATABASE.get("HOST") or None,
        port=DATABASE.get("PORT") or None,
        user=DATABASE.get("USER") or None,
        password=DATABASE.get("PASSWORD") or None,
        dbname=dbname,
        **options,
    )


def recreate_database() -> str:
    """Drop and create the bench database (runs are comparable only from the same empty start)."""
    name = DATABASE["NAME"]
    connection.close()
    try:
        with pg_connect("postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            # The figures depend on how much of the data the server keeps in memory: say so.
            version = admin.execute("SHOW server_version").fetchone()[0]
            version += f", shared_buffers {admin.execute('SHOW shared_buffers').fetchone()[0]}"
    except psycopg.OperationalError as exc:
        raise SystemExit(f"cannot reach PostgreSQL for {DATABASE_URL!r}: {exc}") from exc
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"database {name} recreated and migrated in {time.perf_counter() - started:.1f}s (PostgreSQL {version})")
    return version


def create_partners() -> None:
    """The ERP, warehouses, carriers and customers, as a script would: ``manage.py partner``."""
    for code, kind in PARTNER_KINDS.items():
        call_command("partner", code, kind=kind, name=f"Scale bench {kind} {code}", stdout=StringIO())


def api_tokens() -> dict[str, str]:
    """A fresh API token per carrier (the secret is only known at creation)."""
    tokens = {}
    for partner in Partner.objects.filter(code__in=CARRIERS):
        tokens[partner.code] = api_token_create(partner=partner, name="scale bench")[1]
    return tokens


def prepare_redis() -> None:
    """Drop tasks a previous, interrupted run left in the bench Redis (they name rows now gone).

    Refuses a Redis that workers already listen on: it is someone else's (a test run's), and its
    tasks are not ours to drop or to take.
    """
    try:
        others = answering_workers()
        if others:
            raise SystemExit(
                f"workers already listen on {REDIS_URL} ({', '.join(sorted(others))}): the benchmark needs a "
                f"Redis database of its own for its worker cases, e.g. BENCH_REDIS_URL={DEFAULT_REDIS_URL}"
            )
        celery_app.control.purge()
    except (OSError, redis.RedisError, kombu.exceptions.OperationalError) as exc:
        raise SystemExit(f"cannot reach Redis at {REDIS_URL!r}: {exc!r}") from exc


def set_eager(eager: bool) -> None:
    """Reactions run in this process (sync cases) or go through Redis to workers (worker cases)."""
    celery_app.conf.task_always_eager = eager


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def queued_tasks() -> int:
    """Tasks waiting in the pipeline's queues or held by a worker (acks are late)."""
    client = redis_client()
    return sum(client.llen(queue) for queue in QUEUES) + client.hlen("unacked")


# --- generating and ingesting sets of order lives -------------------------------------------------


def generate(tag: str, orders: int, **spec: Any) -> Summary:
    started = time.perf_counter()
    summary = write_histories(HistorySpec(orders=orders, tag=tag, anchor=ANCHOR, **spec), DATA / f"{orders}-{tag}")
    print(
        f"set {tag}: {orders:,} orders, {summary.shipments:,} shipments, {summary.events:,} events "
        f"({summary.resent:,} re-sent, {summary.events / max(1, orders):.1f} an order) in {summary.files:,} files, "
        f"written in {time.perf_counter() - started:.1f}s to {summary.root.relative_to(ROOT)}"
    )
    return summary


class Progress:
    """A line every PROGRESS_EVERY seconds, so a long run shows it is alive and how fast it goes."""

    def __init__(self, label: str, files: int, events: int) -> None:
        self.label, self.total_files, self.total_events = label, files, events
        self.files = self.events = 0
        self.started = self.shown = time.perf_counter()

    def advance(self, files: int, events: int) -> None:
        self.files += files
        self.events += events
        now = time.perf_counter()
        if now - self.shown >= PROGRESS_EVERY:
            self.shown = now
            rate = self.events / (now - self.started)
            print(
                f"  {self.label}: {self.files:,}/{self.total_files:,} files, "
                f"{self.events:,}/{self.total_events:,} events, {rate:,.0f} events/s",
                flush=True,
            )


def ingest(summary: Summary, *, sync: bool, label: str) -> list[str]:
    """Run the real ``ingest`` command over the set's files in their interleaved order.

    Consecutive files of one partner share a call. Returns the failures the command reported.
    """
    progress = Progress(label, summary.files, summary.events)
    failures = []
    for partner, entries in groupby(read_manifest(summary.root), key=lambda entry: entry.partner):
        entries = list(entries)
        for start in range(0, len(entries), GROUP_FILES):
            group = entries[start : start + GROUP_FILES]
            paths = [str(summary.root / entry.path) for entry in group]
            output, errors = StringIO(), StringIO()
            try:
                # tqdm draws no progress bar on a stderr that is not a terminal.
                with redirect_stderr(errors):
                    call_command("ingest", *paths, partner=partner, format="json", sync=sync, stdout=output)
            except CommandError as exc:
                failures.append(f"{partner} {group[0].path}..: {exc} {output.getvalue()[-500:]}")
            progress.advance(len(group), sum(entry.events for entry in group))
    return failures


def last_message_id() -> int:
    return InboundMessage.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def message_statuses(after: int) -> dict[str, int]:
    rows = InboundMessage.objects.filter(pk__gt=after).values("status").annotate(n=Count("pk")).order_by()
    return {row["status"]: row["n"] for row in rows}


def first_error(after: int) -> str:
    failed = InboundMessage.objects.filter(pk__gt=after).exclude(error="").order_by("pk").first()
    return f"message {failed.pk} ({failed.filename}): {failed.error[:300]}" if failed else ""


def timeout_for(events: int) -> float:
    """Long enough for a slow pipeline (25 events/s), short enough to notice a stuck one."""
    configured = os.environ.get("SCALE_TIMEOUT")
    return float(configured) if configured else 300 + events / 25


# --- stage split and query counts -----------------------------------------------------------------


@dataclass
class QueryCount:
    queries: int = 0

    def __call__(self, execute: Callable, statement: str, params: object, many: bool, context: dict) -> object:
        self.queries += 1
        return execute(statement, params, many, context)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # kB on Linux


# --- cases: sync, copy, second ---------------------------------------------------------------------


def checkpoint() -> None:
    """Write out dirty pages before a measurement, so it does not pay for the previous one's."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError:
        pass  # not a superuser: the figures are a little noisier, nothing more


def sync_load(summary: Summary, label: str) -> Figures:
    """Ingest a set with ``ingest --sync``: parse, apply and react in this process."""
    set_eager(True)
    checkpoint()
    stages_reset()
    first = last_message_id()
    parked = ParkedEvent.objects.count()
    counter = QueryCount()
    started = time.perf_counter()
    with connection.execute_wrapper(counter):
        failures = ingest(summary, sync=True, label=label)
    wall = time.perf_counter() - started
    figures = {
        "orders": summary.orders,
        "events": summary.events,
        "unique events": summary.unique,
        "files": summary.files,
        "seconds": round(wall, 2),
        "events/s": round(summary.events / wall, 1),
        "ms/event": round(1000 * wall / summary.events, 3),
        "queries": counter.queries,
        "queries/event": round(counter.queries / summary.events, 2),
        "peak RSS MB": peak_rss_mb(),
        "messages": message_statuses(first),
        "still parked after the load": ParkedEvent.objects.count() - parked,
        "orders in db": Order.objects.count(),
        "milestones in db": Milestone.objects.count(),
    }
    if failures:
        figures["failures"] = len(failures)
        figures["first failure"] = failures[0][:300]
    stages = stage_seconds()
    figures["stages"] = {stage: round(seconds, 3) for stage, seconds in sorted(stages.items())}
    figures["stage share %"] = {stage: round(100 * seconds / wall, 1) for stage, seconds in sorted(stages.items())}
    return figures


def copy_baseline(summary: Summary) -> Figures:
    """The same events, read from the same files, written by ``COPY``: what storing alone costs.

    Re-sent events are left out (``event_id`` is the primary key), so the rate is of unique rows.
    """
    checkpoint()
    with pg_connect(DATABASE["NAME"]) as pg:
        pg.execute("DROP TABLE IF EXISTS bench_copy")
        pg.execute(
            "CREATE TABLE bench_copy (event_id text PRIMARY KEY, kind text, occurred_at timestamptz, body jsonb)"
        )
        pg.commit()
        rows = 0
        started = time.perf_counter()
        with pg.cursor() as cursor:
            statement = "COPY bench_copy (event_id, kind, occurred_at, body) FROM STDIN"
            with cursor.copy(statement) as copy:
                for entry in read_manifest(summary.root):
                    resent = set(entry.resent)
                    for index, event in enumerate(read_events(summary.root, entry)):
                        if index not in resent:
                            copy.write_row((event["event_id"], event["kind"], event["occurred_at"], json.dumps(event)))
                            rows += 1
        pg.commit()
        wall = time.perf_counter() - started
        pg.execute("DROP TABLE bench_copy")
        pg.commit()
    return {"rows": rows, "seconds": round(wall, 2), "rows/s": round(rows / wall, 1)}


# --- workers ----------------------------------------------------------------------------------------


def answering_workers() -> set[str]:
    """Names of the workers listening on the bench Redis."""
    replies = celery_app.control.ping(timeout=1.0) or []
    return {name.split("@")[0] for reply in replies for name in reply}


def wait_ready(workers: list[Worker], timeout: float = 90) -> None:
    """Until every worker answers a ping: timings start with workers able to take tasks."""
    deadline = time.monotonic() + timeout
    names = {worker.hostname for worker in workers}
    while time.monotonic() < deadline:
        check_alive(workers)
        if names <= answering_workers():
            return
    raise BenchError(f"workers not ready within {timeout:.0f}s: {workers[0].tail()}")


@contextmanager
def running_workers(queue_sets: list[str]) -> Iterator[list[Worker]]:
    """Workers on the bench database and Redis, one per queue set; stopped whatever happens."""
    others = answering_workers()
    if others:
        # They would take tasks too (and their results would be counted): stop them first.
        raise BenchError(f"other workers already listen on {REDIS_URL}: {', '.join(sorted(others))}")
    # Workers keep their database connections between tasks, as docker-compose.yml runs them.
    env = {"CONN_MAX_AGE": "60", **os.environ, "CELERY_TASK_ALWAYS_EAGER": "false"}
    workers: list[Worker] = []
    try:
        for number, queues in enumerate(queue_sets, start=1):
            workers.append(start_worker(f"{number}-{queues.replace(',', '-')}", queues, DATA, env))
        wait_ready(workers)
        yield workers
    finally:
        for worker in workers:
            stop_worker(worker)


def worker_memory(workers: list[Worker]) -> Figures:
    for worker in workers:
        record_peaks(worker)
    return {f"worker {worker.name} peak RSS MB": peaks_mb(worker) for worker in workers}


def poll_until(done: Callable[[], tuple[bool, str]], workers: list[Worker], label: str, timeout: float) -> None:
    """Poll ``done`` (finished?, how far) until it says finished, printing progress now and then;
    fail when a worker died or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    shown = time.monotonic()
    while True:
        finished, progress = done()
        if finished:
            return
        check_alive(workers)
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"{label}: not done after {timeout:.0f}s: {progress}")
        if now - shown >= PROGRESS_EVERY:
            shown = now
            print(f"  {label}: {progress}", flush=True)
        time.sleep(0.1)


def wait_processed(after: int, expected: int, workers: list[Worker], label: str, timeout: float) -> None:
    """Until the ``expected`` messages stored after message ``after`` are no longer ``received``."""

    def done() -> tuple[bool, str]:
        statuses = message_statuses(after)
        waiting = statuses.get(InboundMessage.Status.RECEIVED, 0)
        finished = sum(statuses.values()) - waiting
        progress = f"{finished:,}/{expected:,} messages processed, {queued_tasks():,} tasks queued"
        return finished >= expected and not waiting, progress

    poll_until(done, workers, label, timeout)


def wait_drained(workers: list[Worker], timeout: float) -> None:
    """Until the reactions queued behind the messages (rules, KPIs) are done too, and no worker
    is still running a task (its after-commit work, such as the retry of parked events)."""
    deadline = time.monotonic() + timeout
    while queued_tasks() or busy_workers():
        check_alive(workers)
        if time.monotonic() > deadline:
            raise BenchError(
                f"{queued_tasks():,} task(s) still queued and {busy_workers()} worker(s) busy after {timeout:.0f}s"
            )
        time.sleep(0.2)


def busy_workers() -> int:
    """Workers running or holding a task, as they answer."""
    inspect = celery_app.control.inspect(timeout=1.0)
    held = [inspect.active() or {}, inspect.reserved() or {}]
    return sum(1 for tasks in held for running in tasks.values() if running)


def retry_parked() -> int:
    """Run the periodic retry of parked events once (beat does not run here); returns how many stay.

    Two workers that apply crossing messages each park what the other has not committed yet; this
    is the job that catches them, every few minutes in production.
    """
    try:
        from apps.timeline.services import retry_parked_events
    except ImportError:
        return ParkedEvent.objects.count()
    for _ in range(1000):  # 5,000 events a call; a bound, should an event come back again and again
        if not retry_parked_events().applied:
            break
    return ParkedEvent.objects.count()


def workers_case(workers: list[Worker]) -> Figures:
    """A third set stored by ``ingest`` (no --sync) and processed by the workers."""
    summary = generate("C", ORDERS)
    set_eager(False)
    first = last_message_id()
    parked = ParkedEvent.objects.count()
    started = time.perf_counter()
    failures = ingest(summary, sync=False, label="workers: storing")
    stored = time.perf_counter() - started
    timeout = timeout_for(summary.events)
    wait_processed(first, summary.files, workers, "workers", timeout)
    wall = time.perf_counter() - started
    wait_drained(workers, timeout)
    drained = time.perf_counter() - started
    figures = {
        "workers": len(workers),
        "events": summary.events,
        "messages": message_statuses(first),
        "storing seconds": round(stored, 2),
        "seconds": round(wall, 2),
        "events/s": round(summary.events / wall, 1),
        "seconds until queues drained": round(drained, 2),
        "still parked after the load": ParkedEvent.objects.count() - parked,
        "still parked after retry_parked_events": retry_parked() - parked,
        **worker_memory(workers),
    }
    if failures or first_error(first):
        figures["first failure"] = (failures[0] if failures else first_error(first))[:300]
    return figures


# --- API cases: webhooks and flood -----------------------------------------------------------------


def post_events(client: Client, token: str, events: list[dict[str, Any]]) -> int:
    """POST canonical events as a partner; returns the id of the stored message."""
    body = json.dumps(events[0] if len(events) == 1 else {"events": events})
    response = client.post(
        "/api/v1/events/", body, content_type="application/json", headers={"authorization": f"Bearer {token}"}
    )
    if response.status_code != 202:
        raise BenchError(f"POST /api/v1/events/ answered {response.status_code}: {response.content[:300]!r}")
    return response.json()["id"]


def scan(event_id: str, kind: str, shipment: tuple[str, str, str], at: datetime) -> dict[str, Any]:
    """A carrier event about ``shipment`` (carrier, shipment number, tracking number)."""
    _, number, tracking = shipment
    return {
        "event_id": event_id,
        "kind": kind,
        "schema_version": 1,
        "occurred_at": at.replace(microsecond=0).isoformat(),
        "references": [{"kind": "shipment", "value": number}, {"kind": "tracking", "value": tracking}],
        "location": {"city": "Hub", "country": "FR"},
    }


def shipments_under_way(limit: int, *, carrier: str | None = None) -> list[tuple[str, str, str]]:
    """(carrier, shipment, tracking) of shipments not delivered yet; delivered ones top up the list."""
    rows = Shipment.objects.exclude(tracking_number="").exclude(number__startswith="SH-P")
    if carrier:
        rows = rows.filter(carrier__code=carrier)
    fields = ("carrier__code", "number", "tracking_number")
    found = list(rows.filter(delivered_at__isnull=True).order_by("pk").values_list(*fields)[:limit])
    if len(found) < limit:
        found += list(rows.filter(delivered_at__isnull=False).order_by("pk").values_list(*fields)[: limit - len(found)])
    if not found:
        raise BenchError("no shipment to send scans for: the cases that load order lives did not run or failed")
    return [(code or CARRIERS[0], number, tracking) for code, number, tracking in found]


def ensure_shipments() -> None:
    """The API cases need shipments; when no load case ran, a small set is loaded here first."""
    if Shipment.objects.exclude(number__startswith="SH-P").exists():
        return
    summary = generate("W", min(ORDERS, 2000))
    failures = ingest(summary, sync=True, label="base set")
    if failures:
        raise BenchError(f"loading the base set failed: {failures[0]}")


def applied(event_ids: set[str]) -> set[str]:
    """Which of the events are on a timeline (as a milestone, or a report of one)."""
    found = set(Milestone.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True))
    return found | set(MilestoneReport.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True))


def wait_applied(event_ids: set[str], workers: list[Worker], label: str, timeout: float) -> None:
    waiting = set(event_ids)

    def done() -> tuple[bool, str]:
        waiting.difference_update(applied(waiting))
        return not waiting, f"{len(event_ids) - len(waiting):,}/{len(event_ids):,} applied"

    poll_until(done, workers, label, timeout)


def webhooks_case(workers: list[Worker], tokens: dict[str, str]) -> Figures:
    """1,000 single-event messages, as carrier webhooks arrive: how long until all are applied."""
    ensure_shipments()
    set_eager(False)
    targets = shipments_under_way(WEBHOOK_MESSAGES)
    now = datetime.now(UTC)
    client = Client()
    ids = set()
    started = time.perf_counter()
    for n in range(WEBHOOK_MESSAGES):
        shipment = targets[n % len(targets)]
        event = scan(f"WH-{n:05d}", "shipment.in_transit", shipment, now - timedelta(seconds=WEBHOOK_MESSAGES - n))
        post_events(client, tokens[shipment[0]], [event])
        ids.add(event["event_id"])
    last_accepted = time.perf_counter()
    wait_applied(ids, workers, "webhooks", timeout_for(WEBHOOK_MESSAGES * 20))
    done = time.perf_counter()
    return {
        "messages": WEBHOOK_MESSAGES,
        "posting seconds": round(last_accepted - started, 2),
        "requests/s": round(WEBHOOK_MESSAGES / (last_accepted - started), 1),
        "seconds from last 202 to all applied": round(done - last_accepted, 2),
        "seconds from first POST to all applied": round(done - started, 2),
    }


def probe_shipments(count: int) -> list[tuple[str, str, str]]:
    """Shipments out for delivery, loaded for the latency probes (each gets one delivery)."""
    after_delivery = {"shipment.pod_received", "freight.charge_posted", "freight.charge_settled", "invoice.generated"}
    excluded = frozenset({"shipment.delivered", *after_delivery})
    summary = generate("P", count, days=20, quiet_days=10, consolidation=0.0, exclude=excluded)
    failures = ingest(summary, sync=True, label="probes")
    if failures:
        raise BenchError(f"loading the probe shipments failed: {failures[0]}")
    rows = Shipment.objects.filter(number__startswith="SH-P", delivered_at__isnull=True).order_by("number")
    found = [
        (code or CARRIERS[0], number, tracking)
        for code, number, tracking in rows.values_list("carrier__code", "number", "tracking_number")
    ]
    if len(found) < count:
        raise BenchError(f"only {len(found)} of {count} probe shipments were loaded")
    return found[:count]


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: of 20 samples, p95 is the 19th."""
    ordered = sorted(values)
    rank = max(1, -(-int(share * 100) * len(ordered) // 100))
    return ordered[rank - 1]


def latencies(
    client: Client, tokens: dict[str, str], probes: list[tuple[str, str, str]], label: str, workers: list[Worker]
) -> list[float]:
    """Post a delivery for each probe, one every SAMPLE_INTERVAL, and time each until it is applied."""
    posted: dict[str, float] = {}
    seconds: dict[str, float] = {}
    deadline = time.monotonic() + timeout_for(FLOOD_MESSAGES * FLOOD_EVENTS)
    next_post = time.perf_counter()
    while len(seconds) < len(probes):
        if len(posted) < len(probes) and time.perf_counter() >= next_post:
            probe = probes[len(posted)]
            event = scan(f"LT-{label}-{len(posted):03d}", "shipment.delivered", probe, datetime.now(UTC))
            posted[event["event_id"]] = time.perf_counter()
            post_events(client, tokens[probe[0]], [event])
            next_post = posted[event["event_id"]] + SAMPLE_INTERVAL
        for event_id in applied(set(posted) - set(seconds)):
            seconds[event_id] = time.perf_counter() - posted[event_id]
        check_alive(workers)
        if time.monotonic() > deadline:
            raise BenchError(f"{label}: {len(probes) - len(seconds)} deliveries not applied in time")
        time.sleep(POLL)
    return [seconds[event_id] for event_id in sorted(seconds)]


def flood(client: Client, tokens: dict[str, str]) -> tuple[list[int], float]:
    """20,000 in-transit scans from the busiest carrier, as 200 messages of 100 events.

    Returns the ids of the messages stored and the seconds posting took.
    """
    busiest = Shipment.objects.values("carrier__code").annotate(n=Count("pk")).order_by("-n").first()
    carrier = (busiest or {}).get("carrier__code") or CARRIERS[0]
    targets = shipments_under_way(5000, carrier=carrier)
    now = datetime.now(UTC)
    ids = []
    started = time.perf_counter()
    for message in range(FLOOD_MESSAGES):
        events = []
        for n in range(FLOOD_EVENTS):
            count = message * FLOOD_EVENTS + n
            at = now - timedelta(seconds=FLOOD_MESSAGES * FLOOD_EVENTS - count)
            events.append(scan(f"FL-{count:06d}", "shipment.in_transit", targets[count % len(targets)], at))
        ids.append(post_events(client, tokens[carrier], events))
    return ids, time.perf_counter() - started


def flood_case(workers: list[Worker], tokens: dict[str, str]) -> Figures:
    """Delivery latency calm, then during a flood of carrier scans, with critical on its own worker."""
    ensure_shipments()
    set_eager(False)
    probes = probe_shipments(2 * LATENCY_SAMPLES)
    wait_drained(workers, timeout_for(10_000))
    client = Client()
    calm = latencies(client, tokens, probes[:LATENCY_SAMPLES], "calm", workers)
    before = last_message_id()
    _, posting = flood(client, tokens)
    flood_started = time.perf_counter() - posting
    during = latencies(client, tokens, probes[LATENCY_SAMPLES:], "flood", workers)
    events = FLOOD_MESSAGES * FLOOD_EVENTS
    wait_processed(before, last_message_id() - before, workers, "flood", timeout_for(events))
    drained = time.perf_counter() - flood_started
    calm_p95, flood_p95 = percentile(calm, 0.95), percentile(during, 0.95)
    return {
        "samples": f"{len(calm)} calm, {len(during)} during the flood",
        "calm p50 s": round(percentile(calm, 0.5), 3),
        "calm p95 s": round(calm_p95, 3),
        "flood p50 s": round(percentile(during, 0.5), 3),
        "flood p95 s": round(flood_p95, 3),
        "flood p95 / calm p95": round(flood_p95 / calm_p95, 1),
        "flood events": events,
        "flood posting seconds": round(posting, 2),
        "seconds until flood processed": round(drained, 2),
        **worker_memory(workers),
    }


# --- running and reporting ---------------------------------------------------------------------------


def run_case(results: dict[str, Figures], name: str, measure: Callable[[], Figures]) -> None:
    """Measure one case; a failure is reported in the results and the next case still runs."""
    print(f"\n== {name}", flush=True)
    try:
        results[name] = measure()
    except (BenchError, WorkerFailed, CommandError) as exc:
        print(f"  FAILED: {exc}", flush=True)
        results[name] = {"error": str(exc)}
    except Exception as exc:
        # A pipeline being changed may break for a while: show where, and measure what still works.
        print(traceback.format_exc(limit=-8), flush=True)
        results[name] = {"error": f"{exc.__class__.__name__}: {exc}"}


def load_cases(results: dict[str, Figures]) -> None:
    """COPY first: on the fresh database it is not slowed by the load's after-effects (autovacuum)."""
    if {"sync", "copy"} & set(SELECTED):
        first = generate("A", ORDERS)
    if "copy" in SELECTED:
        run_case(results, "COPY baseline", lambda: copy_baseline(first))
    if "sync" in SELECTED:
        run_case(results, "sync ingest", lambda: sync_load(first, "sync ingest"))
        _compare_with_copy(results)
    if "second" in SELECTED:
        second = generate("B", ORDERS)
        run_case(results, "second load", lambda: sync_load(second, "second load"))
        _compare_loads(results)


def _compare_with_copy(results: dict[str, Figures]) -> None:
    pipeline, copy = results.get("sync ingest", {}), results.get("COPY baseline", {})
    if pipeline.get("events/s") and copy.get("rows/s"):
        copy["sync events/s as % of COPY rows/s"] = round(100 * pipeline["events/s"] / copy["rows/s"], 2)


def _compare_loads(results: dict[str, Figures]) -> None:
    first, second = results.get("sync ingest", {}), results.get("second load", {})
    if first.get("ms/event") and second.get("ms/event"):
        second["cost per event, second / first"] = round(second["ms/event"] / first["ms/event"], 2)


def worker_cases(results: dict[str, Figures]) -> None:
    tokens = api_tokens() if {"webhooks", "flood"} & set(SELECTED) else {}
    if {"workers", "webhooks"} & set(SELECTED):
        print(f"\nstarting {WORKERS} worker(s) on {','.join(QUEUES)}", flush=True)
        try:
            with running_workers([",".join(QUEUES)] * WORKERS) as workers:
                if "workers" in SELECTED:
                    run_case(results, "workers", lambda: workers_case(workers))
                if "webhooks" in SELECTED:
                    run_case(results, "webhook micro-batches", lambda: webhooks_case(workers, tokens))
        except (BenchError, WorkerFailed) as exc:
            print(f"  FAILED: {exc}")
            results.setdefault("workers", {"error": str(exc)})
    if "flood" in SELECTED:
        print("\nstarting 2 workers split as in docker-compose.yml: critical | default,bulk", flush=True)
        try:
            with running_workers(["critical", "default,bulk"]) as workers:
                run_case(results, "flood latency", lambda: flood_case(workers, tokens))
        except (BenchError, WorkerFailed) as exc:
            print(f"  FAILED: {exc}")
            results.setdefault("flood latency", {"error": str(exc)})


def _rows(results: dict[str, Figures]) -> list[tuple[str, str, str]]:
    rows = []
    for case, figures in results.items():
        share = figures.get("stage share %", {})
        for figure, value in figures.items():
            if figure == "stage share %":
                continue
            if figure == "stages":
                if not value:
                    rows.append((case, "stages", "(none recorded)"))
                for stage, seconds in value.items():
                    rows.append((case, f"stage {stage}", f"{seconds:,.2f} s ({share.get(stage, 0):.1f}% of wall)"))
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{key} {count:,}" for key, count in value.items())
            elif isinstance(value, int | float):
                value = f"{value:,}"
            rows.append((case, figure, str(value)))
    return rows


def print_table(results: dict[str, Figures]) -> None:
    rows = [("case", "figure", "value"), *_rows(results)]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    print()
    for row in rows:
        print(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
    if any(figures.get("stages") for figures in results.values()):
        print("(stages nest, e.g. apply holds projections: a stage inside another counts in both)")


def meta(version: str) -> Figures:
    return {
        "database": f"PostgreSQL {version}, {DATABASE.get('HOST') or 'socket'}/{DATABASE['NAME']}",
        "redis": REDIS_URL,
        "orders": ORDERS,
        "workers": WORKERS,
        "cases": SELECTED,
        "python": sys.version.split()[0],
        "anchor": ANCHOR.isoformat(),
        "at": datetime.now(UTC).isoformat(),
    }


def claim_data_folder() -> IO[str]:
    """Empty the folder of generated files and hold it while the returned lock file stays open:
    a second run started in the same checkout would delete the files this one is reading."""
    OUT.mkdir(parents=True, exist_ok=True)
    lock = (OUT / "scale.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SystemExit(f"another scale bench is using {DATA}: wait for it, or run from another checkout") from None
    # Files of earlier runs are generated again on demand; a million orders take gigabytes.
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    return lock


def maintenance_note(maintenance: AutoVacuum) -> str:
    if not maintenance.emulated:
        return "the server's autovacuum"
    return (
        f"the server runs without autovacuum; tables vacuumed and analyzed as it would, {maintenance.runs} times, "
        f"{maintenance.seconds:.1f} s in all (bench/autovacuum.py)"
    )


def main() -> int:
    # A plain `kill` runs the finally blocks too: worker processes are never left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(
        f"scale bench: {ORDERS:,} orders, cases {', '.join(SELECTED)}; database {DATABASE['NAME']}, Redis {REDIS_URL}"
    )
    if WORKER_CASES & set(SELECTED):
        prepare_redis()
    results: dict[str, Figures] = {}
    with claim_data_folder():
        version = recreate_database()
        create_partners()
        with AutoVacuum(lambda: pg_connect(DATABASE["NAME"])) as maintenance:
            load_cases(results)
            worker_cases(results)
    print_table(results)
    print(f"table maintenance: {maintenance_note(maintenance)}")
    path = OUT / f"scale-{ORDERS}.json"
    document = {"meta": {**meta(version), "table maintenance": maintenance_note(maintenance)}, "results": results}
    path.write_text(json.dumps(document, indent=2, default=str))
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 1 if any("error" in figures for figures in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
