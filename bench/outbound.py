"""Outbound sending benchmark, part of ``make bench``: deliveries to a receiver on loopback.

- ``send``: every delivery the outbox case queued (3 subscriptions, one endpoint) drained as the
  worker drains them; deliveries/s and queries per delivery;
- ``raw``: the same HTTP client (the network guard over httpcore), with the same number of
  requests in flight, posting the same bodies to the same receiver with no database work: the
  ceiling the ``send`` rate is compared with;
- ``sustained`` (PostgreSQL and Redis: ``BENCH_REDIS_URL``, a database of its own): one
  subscription to every event while a producer process applies events at ``OUTBOUND_BENCH_RATE``
  a second (200) for ``OUTBOUND_BENCH_SECONDS`` (60), each tick's commit queueing a drain that a
  real outbound worker (``--pool=threads --concurrency=16``, as docker-compose runs it) takes from
  Redis; commit-to-delivery p50 and p95.

The receiver runs in its own process (a keep-alive HTTP/1.1 server answering 204), so it takes no
time from the sender's interpreter.
"""

import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from celery import Celery
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from apps.outbound.models import Delivery, Endpoint, Subscription
from apps.outbound.selectors import _percentile
from apps.outbound.services import endpoint_drain, endpoint_of, render, signed_headers
from apps.partners import network
from bench.workers import Worker, WorkerFailed, check_alive, start_worker, stop_worker

RATE = int(os.environ.get("OUTBOUND_BENCH_RATE") or 200)
SECONDS = int(os.environ.get("OUTBOUND_BENCH_SECONDS") or 60)
# The sustained case's broker and cache: a Redis database of the bench's own (its queues are purged).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "")
WORKER_THREADS = 16  # docker-compose's worker-outbound
OUT = Path(__file__).resolve().parent.parent / "var" / "bench"


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(port: multiprocessing.Value) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.daemon_threads = True
    port.value = server.server_address[1]
    server.serve_forever()


def start_receiver() -> tuple[multiprocessing.Process, str]:
    """The receiver in a process of its own; its URL once it listens."""
    connections.close_all()  # the child inherits no database connection
    port = multiprocessing.get_context("fork").Value("i", 0)
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(port,), daemon=True)
    process.start()
    while not port.value:
        time.sleep(0.01)
    return process, f"http://127.0.0.1:{port.value}/hooks/control-tower"


@dataclass
class Counted:
    queries: int = 0

    def __call__(self, execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        self.queries += 1
        return execute(sql, params, many, context)


@contextmanager
def counting_copies(counted: Counted) -> Iterator[None]:
    """Count each ``COPY`` as a query too (Django's execute wrappers never see one)."""
    copy = psycopg.Cursor.copy

    def counting(cursor: psycopg.Cursor, *args: object, **kwargs: object) -> object:
        counted.queries += 1
        return copy(cursor, *args, **kwargs)

    psycopg.Cursor.copy = counting
    try:
        yield
    finally:
        psycopg.Cursor.copy = copy


def send_case(endpoint: Endpoint) -> dict:
    """Drain everything queued for ``endpoint``, as the worker's task does."""
    pending = Delivery.objects.filter(subscription__endpoint=endpoint, status=Delivery.Status.PENDING).count()
    counted = Counted()
    started = time.perf_counter()
    with connection.execute_wrapper(counted), counting_copies(counted):
        sent = endpoint_drain(endpoint_id=endpoint.pk)
    seconds = time.perf_counter() - started
    delivered = Delivery.objects.filter(subscription__endpoint=endpoint, status=Delivery.Status.DELIVERED).count()
    if sent != pending or delivered != pending:
        raise RuntimeError(f"outbound send: {pending} queued, {sent} sent, {delivered} delivered")
    return {"deliveries": sent, "seconds": seconds, "queries": counted.queries}


def raw_case(endpoint: Endpoint, url: str, count: int) -> dict:
    """The same client posting the same signed bodies, ``max_in_flight`` at a time, no database."""
    samples = list(
        Delivery.objects.filter(subscription__endpoint=endpoint).select_related("event", "subscription")[:50]
    )
    requests = []
    for delivery in samples:
        body = render(delivery)[0]
        headers = {"Content-Type": "application/json", "User-Agent": "bench"}
        headers |= signed_headers(
            delivery.subscription, message_id=str(delivery.idempotency_key), body=body, now=timezone.now()
        )
        requests.append((headers, body))

    def post(n: int) -> int:
        headers, body = requests[n % len(requests)]
        reply = network.request(
            "POST", url, headers=headers, body=body, timeout=10, max_bytes=settings.OUTBOUND_MAX_RESPONSE_BYTES
        )
        return reply.status

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=endpoint.max_in_flight) as pool:
        statuses = list(pool.map(post, range(count)))
    seconds = time.perf_counter() - started
    if set(statuses) != {204}:
        raise RuntimeError(f"raw posts answered {sorted(set(statuses))}")
    return {"requests": count, "seconds": seconds}


def sustained_case(partner, url: str, stories: Callable[[int], list[dict]]) -> dict:
    """Events applied at ``RATE`` a second for ``SECONDS`` by a producer process, one subscription to
    all of them, sent by a real outbound worker (threads, as docker-compose runs it) that each
    commit's queued drain reaches through Redis; commit-to-delivery of every delivery made."""
    Subscription.objects.filter(partner=partner).update(active=False)
    subscription = Subscription.objects.create(partner=partner, name="everything", target_url=url, event_kinds=["*"])
    endpoint_of(subscription)
    events_file = OUT / "sustained-events.json"
    events_file.write_text(json.dumps([e for n in range(50_000, 50_000 + RATE * SECONDS // 8 + 1) for e in stories(n)]))
    env = {**os.environ, "REDIS_URL": REDIS_URL, "CELERY_TASK_ALWAYS_EAGER": "false"}
    worker = start_worker("outbound", "outbound", OUT, env, pool="threads", concurrency=WORKER_THREADS)
    try:
        _wait_ready(worker)
        produced = subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [sys.executable, "-m", "bench.outbound_producer", str(events_file), str(RATE), str(SECONDS)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        produced = json.loads(produced.stdout.strip().splitlines()[-1])
        _wait_delivered(subscription, worker)
    finally:
        stop_worker(worker)
        _purge_queues()
    measured = sorted(
        Delivery.objects.filter(subscription=subscription, status=Delivery.Status.DELIVERED).values_list(
            "freshness_ms", flat=True
        )
    )
    return {
        "events": produced["events"],
        "seconds": produced["seconds"],
        "deliveries": len(measured),
        "p50_ms": _percentile(measured, 50),
        "p95_ms": _percentile(measured, 95),
    }


def _wait_ready(worker: Worker, timeout: float = 60) -> None:
    """Until the worker answers a ping: the producer starts with a worker able to take drains."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive([worker])
        replies = _broker().control.ping(timeout=0.5) or []
        if any(name.startswith(f"{worker.hostname}@") for reply in replies for name in reply):
            return
    raise WorkerFailed(f"the outbound worker did not answer within {timeout:.0f} s: {worker.tail()}")


def _wait_delivered(subscription: Subscription, worker: Worker, timeout: float = 120) -> None:
    """Until every delivery made is delivered (the last ones are in flight when the producer ends)."""
    deadline = time.monotonic() + timeout
    undelivered = Delivery.objects.filter(subscription=subscription).exclude(status=Delivery.Status.DELIVERED)
    while undelivered.exists():
        check_alive([worker])
        if time.monotonic() > deadline:
            raise RuntimeError(f"sustained: {undelivered.count()} deliveries still undelivered after {timeout:.0f} s")
        time.sleep(0.2)


def _broker() -> Celery:
    return Celery("bench", broker=REDIS_URL)


def _purge_queues() -> None:
    """What the producer's applies queued for workers this bench does not run (reactions on other
    queues) is dropped with what is left on the outbound one."""
    with _broker().connection_for_write() as broker:
        channel = broker.default_channel
        for queue in ("outbound", "critical", "default", "bulk"):
            channel.queue_purge(queue)


def outbound_send_cases(partner, stories: Callable[[int], list[dict]], url: str) -> list[dict]:
    """The send and raw rates (and the sustained run on PostgreSQL) as rows for the table."""
    endpoint = Endpoint.objects.get(subscriptions__partner=partner, subscriptions__name="all")
    send = send_case(endpoint)
    raw = raw_case(endpoint, url, min(send["deliveries"], 5000))
    rate = send["deliveries"] / send["seconds"]
    raw_rate = raw["requests"] / raw["seconds"]
    rows = [
        {
            "case": f"send {send['deliveries']:,} deliveries (3 subscriptions) to loopback",
            "per_second": round(rate),
            "queries_per_delivery": round(send["queries"] / send["deliveries"], 3),
            "share_of_raw": f"{rate / raw_rate:.0%}",
            "p50_ms": "",
            "p95_ms": "",
        },
        {
            "case": f"raw: the same client, {raw['requests']:,} posts, {endpoint.max_in_flight} in flight, no database",
            "per_second": round(raw_rate),
            "queries_per_delivery": 0,
            "share_of_raw": "100%",
            "p50_ms": "",
            "p95_ms": "",
        },
    ]
    if connection.vendor != "postgresql" or not REDIS_URL:
        print("outbound sustained run skipped: it needs PostgreSQL and Redis (BENCH_DATABASE_URL, BENCH_REDIS_URL)")
        return rows
    sustained = sustained_case(partner, url, stories)
    rows.append(
        {
            "case": f"sustained: {sustained['events'] / sustained['seconds']:.0f} events/s for "
            f"{sustained['seconds']:.0f} s, 1 subscription to all, outbound worker; commit to delivery "
            f"p95 under 1 s: {'yes' if sustained['p95_ms'] < 1000 else 'NO'}",
            "per_second": round(sustained["deliveries"] / sustained["seconds"]),
            "queries_per_delivery": "",
            "share_of_raw": "",
            "p50_ms": sustained["p50_ms"],
            "p95_ms": sustained["p95_ms"],
        }
    )
    return rows
