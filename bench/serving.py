"""Serving benchmark: the production web server (``gunicorn.conf.py``) taking signed webhooks.

``make bench-serving`` (or ``python -m bench.serving``) recreates its own PostgreSQL database,
starts the server on loopback as deployed and drives it with ``wrk`` (Debian's package: a compiled
load generator that leaves the server its cores), fed pre-signed single-event webhooks:

- ``saturation``: ``SERVING_CONNECTIONS`` connections sending as fast as answers come, for
  ``SERVING_SECONDS``; requests/s, latency percentiles, answers by status, and whether every
  ``202`` is a row in the database;
- ``steady``: half the saturation rate, offered at a steady pace (each connection waits between
  requests); latency percentiles;
- ``healthz``: ``GET /healthz`` on the same server, as fast as it answers: the floor of a request.

Environment: ``BENCH_SERVING_DATABASE_URL`` (PostgreSQL, a database whose name contains "bench";
dropped and created again), ``BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/4, flushed),
``WEB_CONCURRENCY`` (server processes; the server's default otherwise), ``SERVING_SECONDS`` (20),
``SERVING_CONNECTIONS`` (64). Figures are printed and written to ``var/bench/serving.json``.
"""

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import environ
import redis

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/controltower_bench_serving"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/4"
SECRET = "whsec-serving-bench-secret-0123456789"  # noqa: S105 - the bench's own channel
PARTNER, CHANNEL = "BENCHHOOK", "hook"


def _setting(name: str, default: int) -> int:
    value = int(os.environ.get(name) or default)
    if value < 1:
        raise SystemExit(f"{name} must be at least 1")
    return value


SECONDS = _setting("SERVING_SECONDS", 20)
CONNECTIONS = _setting("SERVING_CONNECTIONS", 64)
DATABASE_URL = os.environ.get("BENCH_SERVING_DATABASE_URL") or DEFAULT_DATABASE_URL
REDIS_URL = os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL
DATABASE = environ.Env.db_url_config(DATABASE_URL)
if DATABASE["ENGINE"] != "django.db.backends.postgresql" or "bench" not in str(DATABASE["NAME"]):
    raise SystemExit("BENCH_SERVING_DATABASE_URL must name a PostgreSQL database whose name contains 'bench'")
if not shutil.which("wrk"):
    raise SystemExit("wrk is not installed: apt-get install wrk")

os.environ.update(
    {
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "controltower.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "serving-bench-only",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_MANIFEST": "false",
        "LOG_LEVEL": "WARNING",
    }
)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from apps.ingest.models import InboundMessage  # noqa: E402
from apps.ingest.webhooks import signature_for  # noqa: E402
from apps.partners.models import Channel, Partner  # noqa: E402
from bench.load import WRK_THREADS, answers, drop_and_create, free_port, lua_request, start_server, write_requests, wrk  # noqa: E402


def recreate_database() -> None:
    connection.close()
    drop_and_create(DATABASE)
    call_command("migrate", verbosity=0)
    partner = Partner.objects.create(code=PARTNER, name="Serving bench carrier", kind=Partner.Kind.CARRIER)
    Channel.objects.create(partner=partner, code=CHANNEL, format=Channel.Format.WEBHOOK, webhook_secret=SECRET)
    redis.Redis.from_url(REDIS_URL).flushdb()


def write_webhooks(path: Path, count: int, tag: str) -> None:
    """``count`` webhooks, each a new event, signed now (they must be sent within the tolerance)."""
    stamp = str(int(time.time()))
    requests = []
    for number in range(count):
        event = {
            "event_id": f"{tag}-{number}",
            "kind": "shipment.in_transit",
            "occurred_at": "2026-12-01T10:00:00Z",
            "references": [{"kind": "tracking", "value": f"1ZBENCH{number:09d}"}],
        }
        body = json.dumps(event)
        signature = signature_for(SECRET, stamp, body.encode())
        headers = {"Content-Type": "application/json", "X-Timestamp": stamp, "X-Signature": signature}
        requests.append(lua_request("POST", f"/hooks/{PARTNER}/{CHANNEL}/", headers, body))
    write_requests(path, requests)


def webhooks(port: int, *, tag: str, rate: float | None, connections: int) -> dict[str, Any]:
    expected = int((rate or 3000) * SECONDS * 1.3) + 1000
    data = OUT / f"serving-{tag}.lua"
    write_webhooks(data, expected, tag)
    stored_before = InboundMessage.objects.count()
    delay_ms = round(connections * 1000 / rate) if rate else 0
    result = wrk(port, data, connections=connections, seconds=SECONDS, delay_ms=delay_ms)
    data.unlink()
    accepted = result["statuses"].get("202", 0)
    result["stored"] = InboundMessage.objects.count() - stored_before
    result["every_202_stored"] = result["stored"] >= accepted  # answers still in flight at the end are stored too
    if result["requests"] > expected:
        result["note"] = "more requests than prepared: the later ones were replays (401)"
    return result


def print_table(results: dict[str, dict[str, Any]], processes: str) -> None:
    print(f"\nserver: gunicorn.conf.py, {processes} processes; wrk {WRK_THREADS} threads, {SECONDS} s per case\n")
    print(f"{'case':<34} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  answers")
    for name, result in results.items():
        print(
            f"{name:<34} {result['per_second']:>8.0f} {result['p50_ms']:>8.1f} {result['p95_ms']:>8.1f} "
            f"{result['p99_ms']:>8.1f}  {answers(result)}"
        )
    saturation = results["webhooks at saturation"]
    print(f"\nevery 202 stored: {saturation['every_202_stored']} ({saturation['stored']} rows)")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    recreate_database()
    port = free_port()
    server = start_server(port, CELERY_TASK_ALWAYS_EAGER="false")
    results: dict[str, dict[str, Any]] = {}
    try:
        health = OUT / "serving-healthz.lua"
        write_requests(health, [lua_request("GET", "/healthz", {})])
        results["GET /healthz"] = wrk(port, health, connections=CONNECTIONS, seconds=SECONDS)
        saturation = webhooks(port, tag="saturation", rate=None, connections=CONNECTIONS)
        results["webhooks at saturation"] = saturation
        half = saturation["per_second"] / 2
        results[f"webhooks, steady {half:.0f}/s"] = webhooks(port, tag="steady", rate=half, connections=16)
    finally:
        server.terminate()
        server.wait(timeout=60)
    processes = os.environ.get("WEB_CONCURRENCY") or "default"
    print_table(results, processes)
    (OUT / "serving.json").write_text(json.dumps({"processes": processes, "results": results}, indent=2))


if __name__ == "__main__":
    main()
