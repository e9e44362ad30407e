"""Page latencies at a million orders: the pages people work in, on the production server.

``make bench-pages`` (or ``python -m bench.pages``) fills its own PostgreSQL database with
``PAGES_ORDERS`` orders (1,000,000) written straight in SQL: each with a PO, a shipment with a
tracking number, ten milestones (five of the order, five of its shipment) and, for
``PAGES_OPEN_CASES`` (100,000) of them, an open case in the finance queue. Loading takes minutes,
so a database that already holds the same counts is kept (``PAGES_RELOAD=1`` loads again). Then it
starts the server as deployed and, signed in as a superuser, drives each page with ``wrk`` (a few
connections, ``PAGES_SECONDS`` each) and prints p50, p95 and p99 next to the goals at this scale:

- search by tracking number and by order number (p95 < 20 ms);
- an order's timeline (p95 < 50 ms);
- the finance queue: its first page, page 100 (keyset cursor), sorted by amount, filtered by
  customer, and its search box given an order number, the beginning of a tracking number and a
  reference that matches nothing (p95 < 100 ms);
- the SLA dashboard (p95 < 250 ms).

``PAGES_ONLY`` (words, comma-separated) drives only the pages whose name holds one of them, e.g.
``PAGES_ONLY=queue`` or ``PAGES_ONLY="search box,page 100"``. ``PAGES_EXPLAIN=1`` first prints,
for the first request of each page, every query it runs with PostgreSQL's planning and execution
times and the indexes its plan reads (``EXPLAIN ANALYZE``). Figures go to
``var/bench/pages-<orders>.json``.
"""

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import environ
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/controltower_bench_pages"
CHUNK = 50_000  # orders written per statement
SAMPLES = 2_000  # distinct targets per page case
CUSTOMERS = 50
GOALS_MS = {"search": 20, "timeline": 50, "queue": 100, "dashboard": 250}


def _setting(name: str, default: int) -> int:
    value = int(os.environ.get(name, "").replace("_", "") or default)
    if value < 1:
        raise SystemExit(f"{name} must be at least 1")
    return value


ORDERS = _setting("PAGES_ORDERS", 1_000_000)
OPEN_CASES = min(_setting("PAGES_OPEN_CASES", 100_000), ORDERS)
SECONDS = _setting("PAGES_SECONDS", 10)
CONNECTIONS = _setting("PAGES_CONNECTIONS", 2)
ONLY = [word.strip() for word in os.environ.get("PAGES_ONLY", "").split(",") if word.strip()]
EXPLAIN = bool(os.environ.get("PAGES_EXPLAIN"))
DATABASE_URL = os.environ.get("BENCH_PAGES_DATABASE_URL") or DEFAULT_DATABASE_URL
DATABASE = environ.Env.db_url_config(DATABASE_URL)
if DATABASE["ENGINE"] != "django.db.backends.postgresql" or "bench" not in str(DATABASE["NAME"]):
    raise SystemExit("BENCH_PAGES_DATABASE_URL must name a PostgreSQL database whose name contains 'bench'")

os.environ.update(
    {
        "DATABASE_URL": DATABASE_URL,
        "DJANGO_SETTINGS_MODULE": "controltower.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "pages-bench-only",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_MANIFEST": "false",
        "LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("REDIS_URL", None)  # pages read no cache the bench must share; keep Redis out of it

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from apps.exceptions.selectors import CASE_ORDER, SORT_AGE  # noqa: E402
from apps.timeline.models import Order  # noqa: E402
from bench.load import answers, drop_and_create, free_port, lua_request, start_server, write_requests, wrk  # noqa: E402
from controltower.keyset import cursor_of  # noqa: E402

# --- loading -----------------------------------------------------------------------------------

PARTNERS = """
INSERT INTO partners_partner (code, name, kind, region, time_zone, active, created_at, updated_at)
SELECT code, code, kind, '', 'UTC', true, now(), now() FROM (VALUES
    ('ERP', 'erp'), ('DC1', 'warehouse'), ('UPSN', 'carrier'), ('FDEG', 'carrier')
) AS p(code, kind)
UNION ALL
SELECT 'CUST' || lpad(c::text, 3, '0'), 'CUST' || lpad(c::text, 3, '0'), 'customer', '', 'UTC', true, now(), now()
FROM generate_series(1, %(customers)s) AS c
"""

# One statement per table and chunk of orders [lo, hi]; ids are the order numbers' own, so every
# table can be written without reading another back.
ORDERS_SQL = """
INSERT INTO timeline_order (id, number, region, promised_at, currency, total_amount, stage, ordered_at,
    released_at, allocated_at, picked_at, packed_at, shipped_at, delivered_at, last_event_at,
    created_at, updated_at, customer_id)
SELECT g, 'SO-' || lpad(g::text, 7, '0'), 'EU', at + interval '5 days', 'EUR', 100 + g %% 900,
    CASE WHEN g %% 4 = 0 THEN 'shipped' ELSE 'delivered' END, at, at + interval '1 hour',
    at + interval '2 hours', at + interval '3 hours', at + interval '4 hours', at + interval '6 hours',
    CASE WHEN g %% 4 = 0 THEN NULL ELSE at + interval '3 days' END, at + interval '3 days', now(), now(),
    (SELECT id FROM partners_partner WHERE code = 'CUST' || lpad((1 + g %% %(customers)s)::text, 3, '0'))
FROM generate_series(%(lo)s, %(hi)s) AS g,
    LATERAL (SELECT now() - interval '400 days' + g * interval '30 seconds' AS at) t
"""

SHIPMENTS_SQL = """
INSERT INTO timeline_shipment (id, number, tracking_number, status, manifested_at, picked_up_at, in_transit_at,
    out_for_delivery_at, delivered_at, delay_reason, last_carrier_event_at, created_at, updated_at, carrier_id,
    warehouse_id)
SELECT g, 'SH-' || lpad(g::text, 7, '0'), '1Z' || lpad(g::text, 10, '0'),
    CASE WHEN g %% 4 = 0 THEN 'in_transit' ELSE 'delivered' END, at + interval '6 hours', at + interval '8 hours',
    at + interval '1 day', at + interval '2 days', CASE WHEN g %% 4 = 0 THEN NULL ELSE at + interval '3 days' END,
    '', at + interval '3 days', now(), now(), CASE WHEN g %% 2 = 0 THEN %(upsn)s ELSE %(fdeg)s END, %(dc)s
FROM generate_series(%(lo)s, %(hi)s) AS g,
    LATERAL (SELECT now() - interval '400 days' + g * interval '30 seconds' AS at) t;
INSERT INTO timeline_shipment_orders (shipment_id, order_id) SELECT g, g FROM generate_series(%(lo)s, %(hi)s) AS g;
"""

REFERENCES_SQL = """
INSERT INTO timeline_reference (kind, value, created_at, order_id, shipment_id)
SELECT kind, value, now(), order_id, shipment_id FROM generate_series(%(lo)s, %(hi)s) AS g, LATERAL (VALUES
    ('order', 'SO-' || lpad(g::text, 7, '0'), g, NULL::bigint),
    ('po', 'PO-' || lpad(g::text, 7, '0'), g, NULL::bigint),
    ('shipment', 'SH-' || lpad(g::text, 7, '0'), NULL::bigint, g),
    ('tracking', '1Z' || lpad(g::text, 10, '0'), NULL::bigint, g)
) AS r(kind, value, order_id, shipment_id)
"""

MILESTONES_SQL = """
INSERT INTO timeline_milestone (event_id, kind, occurred_at, recorded_at, "references", lines, currency, payload,
    source_partner_id, order_id, shipment_id)
SELECT g || '-' || k.kind, k.kind, at + k.after, now(), refs, '[]'::jsonb, '',
    jsonb_build_object('event_id', g || '-' || k.kind, 'kind', k.kind, 'schema_version', 1,
        'occurred_at', to_char(at + k.after, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'references', refs,
        'source', jsonb_build_object('partner', k.partner), 'attributes', '{}'::jsonb),
    CASE k.partner WHEN 'ERP' THEN %(erp)s WHEN 'DC1' THEN %(dc)s
        ELSE CASE WHEN g %% 2 = 0 THEN %(upsn)s ELSE %(fdeg)s END END,
    CASE WHEN k.on_order THEN g END, CASE WHEN k.on_order THEN NULL ELSE g END
FROM generate_series(%(lo)s, %(hi)s) AS g,
    LATERAL (SELECT now() - interval '400 days' + g * interval '30 seconds' AS at) t,
    LATERAL (VALUES
        ('order.created', interval '0', 'ERP', true), ('order.released', interval '1 hour', 'ERP', true),
        ('order.allocated', interval '2 hours', 'DC1', true), ('order.picked', interval '3 hours', 'DC1', true),
        ('order.packed', interval '4 hours', 'DC1', true), ('shipment.manifested', interval '6 hours', 'DC1', false),
        ('shipment.picked_up', interval '8 hours', 'CARRIER', false),
        ('shipment.in_transit', interval '1 day', 'CARRIER', false),
        ('shipment.out_for_delivery', interval '2 days', 'CARRIER', false),
        ('shipment.delivered', interval '3 days', 'CARRIER', false)
    ) AS k(kind, after, partner, on_order),
    LATERAL (SELECT CASE WHEN k.on_order
        THEN jsonb_build_array(jsonb_build_object('kind', 'order', 'value', 'SO-' || lpad(g::text, 7, '0')))
        ELSE jsonb_build_array(jsonb_build_object('kind', 'tracking', 'value', '1Z' || lpad(g::text, 10, '0')))
    END AS refs) r
"""

CASES_SQL = """
INSERT INTO exceptions_exceptioncase (queue, severity, subject_type, subject_id, region, summary, amount_at_risk,
    currency, status, opened_at, due_at, resolution, resolution_note, rule_id, order_id, customer_id)
SELECT 'finance', 'high', 'order', g, 'EU', 'SO-' || lpad(g::text, 7, '0') || ': delivered, not invoiced',
    CASE WHEN g %% 5 = 0 THEN NULL ELSE 100 + g %% 900 END, 'EUR', 'open', now() - g * interval '1 minute',
    now() - g * interval '1 minute' + interval '1 day', '', '', %(rule)s, g,
    (SELECT customer_id FROM timeline_order WHERE id = g)
FROM generate_series(%(lo)s, %(hi)s) AS g
"""


def _database_ready() -> bool:
    """The database holds this run's counts already (loading again would take minutes)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM timeline_order")
            orders = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM exceptions_exceptioncase WHERE status = 'open'")
            cases = cursor.fetchone()[0]
    except django.db.Error:
        return False
    return orders == ORDERS and cases == OPEN_CASES


def load() -> None:
    connection.close()
    drop_and_create(DATABASE)
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(PARTNERS, {"customers": CUSTOMERS})
        cursor.execute("SELECT code, id FROM partners_partner WHERE code IN ('ERP', 'DC1', 'UPSN', 'FDEG')")
        names = {"ERP": "erp", "DC1": "dc", "UPSN": "upsn", "FDEG": "fdeg"}
        ids = {names[code]: pk for code, pk in cursor.fetchall()}
        cursor.execute("SELECT id FROM exceptions_exceptionrule WHERE code = 'delivered_not_invoiced'")
        ids["rule"] = cursor.fetchone()[0]
    steps = [("orders", ORDERS_SQL, ORDERS), ("shipments", SHIPMENTS_SQL, ORDERS)]
    steps += [("references", REFERENCES_SQL, ORDERS), ("milestones", MILESTONES_SQL, ORDERS)]
    steps += [("open cases", CASES_SQL, OPEN_CASES)]
    started = time.perf_counter()
    with tqdm(total=sum(count for _, _, count in steps), unit=" orders", desc="loading") as bar:
        for label, statement, count in steps:
            bar.set_postfix_str(label)
            for lo in range(1, count + 1, CHUNK):
                with connection.cursor() as cursor:
                    cursor.execute(
                        statement, {**ids, "lo": lo, "hi": min(lo + CHUNK - 1, count), "customers": CUSTOMERS}
                    )
                bar.update(min(CHUNK, count - lo + 1))
    with connection.cursor() as cursor:
        for table in ("timeline_order", "timeline_shipment"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {ORDERS})")  # noqa: S608 - constants
        cursor.execute("VACUUM ANALYZE")
    took = time.perf_counter() - started
    print(f"loaded {ORDERS:,} orders, {10 * ORDERS:,} milestones, {OPEN_CASES:,} open cases in {took:.0f} s")


# --- measuring ---------------------------------------------------------------------------------


def session_cookie() -> str:
    user = User.objects.create_superuser(f"pages-{time.time_ns()}")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def page_100_cursor() -> str:
    """The cursor the finance queue's "Next" link carries after 99 pages of 50."""
    from apps.exceptions.selectors import case_list

    row = case_list(queue="finance").order_by(*[key.name for key in CASE_ORDER[SORT_AGE]])[99 * 50 - 1]
    return cursor_of(CASE_ORDER[SORT_AGE], row)


def cases(cookie: str) -> dict[str, tuple[str, list[str]]]:
    """Each case: its goal and the paths its connections take in turn."""
    rng = random.Random(7)
    numbers = [rng.randint(1, ORDERS) for _ in range(SAMPLES)]
    with_case = [n % OPEN_CASES + 1 for n in numbers]
    without_case = [OPEN_CASES + n % max(ORDERS - OPEN_CASES, 1) + 1 for n in numbers]
    customers = Order.objects.filter(pk__in=numbers[:20]).values_list("customer__code", flat=True)
    return {
        "search by tracking number": ("search", [f"/search/?q=1Z{n:010d}" for n in numbers]),
        "search by order number": ("search", [f"/search/?q=SO-{n:07d}" for n in numbers]),
        "order timeline": ("timeline", [f"/orders/{n}/" for n in numbers]),
        "finance queue, first page": ("queue", ["/queues/finance/"]),
        "finance queue, page 100": ("queue", [f"/queues/finance/?after={page_100_cursor()}"]),
        "finance queue by amount": ("queue", ["/queues/finance/?sort=amount"]),
        "finance queue, one customer": ("queue", [f"/queues/finance/?customer={c}" for c in customers]),
        # The search box: order numbers with an open case, the first 10 characters of their
        # tracking numbers (100 shipments each) and order numbers without a case (nothing found,
        # though every word of them is in many cases' summaries).
        "queue search box, order number": ("queue", [f"/queues/finance/?q=SO-{n:07d}" for n in with_case]),
        "queue search box, tracking prefix": ("queue", [f"/queues/finance/?q=1Z{n:010d}"[:-2] for n in with_case]),
        "queue search box, no match": ("queue", [f"/queues/finance/?q=SO-{n:07d}" for n in without_case]),
        "SLA dashboard": ("dashboard", ["/dashboards/"]),
    }


def chosen(cookie: str) -> dict[str, tuple[str, list[str]]]:
    return {name: case for name, case in cases(cookie).items() if not ONLY or any(word in name for word in ONLY)}


def explain(cookie: str) -> None:
    """Each page's queries, as PostgreSQL plans and runs them: times and the indexes read."""
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.filter(is_superuser=True).latest("pk"))
    for name, (_, paths) in chosen(cookie).items():
        client.get(paths[0])  # caches warm, as the measured requests find them
        with CaptureQueriesContext(connection) as captured:
            client.get(paths[0])
        print(f"\n{name}: {paths[0]}")
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.startswith("SELECT") or "django_session" in sql or 'FROM "auth_user"' in sql:
                continue
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
                plan = cursor.fetchone()[0][0]
            print(
                f"  plan {plan['Planning Time']:6.2f} ms, run {plan['Execution Time']:7.2f} ms, "
                f"{', '.join(sorted(_indexes(plan['Plan']))) or 'no index'}: {sql[:70]}"
            )


def _indexes(node: dict) -> set[str]:
    found = {node["Index Name"]} if "Index Name" in node else set()
    if node.get("Node Type") == "Seq Scan":
        found.add(f"seq scan {node['Relation Name']}")
    for child in node.get("Plans", []):
        found |= _indexes(child)
    return found


def measure(port: int, cookie: str) -> dict[str, dict[str, Any]]:
    results = {}
    for name, (goal, paths) in chosen(cookie).items():
        data = OUT / "pages-requests.lua"
        headers = {"Cookie": cookie, "Host": "127.0.0.1"}
        write_requests(data, [lua_request("GET", path, headers) for path in paths])
        result = wrk(port, data, connections=CONNECTIONS, seconds=SECONDS)
        result["goal_p95_ms"] = GOALS_MS[goal]
        results[name] = result
        print(f"  {name}: p95 {result['p95_ms']:.1f} ms ({answers(result)})")
    return results


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(f"\n{ORDERS:,} orders, {10 * ORDERS:,} milestones, {OPEN_CASES:,} open finance cases;")
    print(f"wrk {CONNECTIONS} connections, {SECONDS} s per page\n")
    print(f"{'page':<34} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'goal p95':>9}  answers")
    for name, result in results.items():
        print(
            f"{name:<34} {result['per_second']:>7.0f} {result['p50_ms']:>8.1f} {result['p95_ms']:>8.1f} "
            f"{result['p99_ms']:>8.1f} {result['goal_p95_ms']:>9}  {answers(result)}"
        )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if os.environ.get("PAGES_RELOAD") or not _database_ready():
        load()
    else:
        print(f"database {DATABASE['NAME']} already holds {ORDERS:,} orders and {OPEN_CASES:,} open cases: kept")
        call_command("migrate", verbosity=0)  # indexes added since it was loaded
    cookie = session_cookie()
    if EXPLAIN:
        explain(cookie)
    port = free_port()
    server = start_server(port)
    try:
        results = measure(port, cookie)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print_table(results)
    (OUT / f"pages-{ORDERS}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
