"""A batch's keys are looked up through indexes, however large the tables grow.

Given ``= ANY`` of a list of a thousand keys, PostgreSQL's planner reads a large table whole, and
hashes whole the tables joined to it, once it believes that cheaper than a thousand index
lookups, which it does long before it is: the cost of an apply then grows with the database.
These tests fill the tables with 100,000 orders and shipments and check that the lookups of a
batch read none of them whole.
"""

import json
from collections.abc import Callable

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext

from apps.dashboards.services import _shipments_of_orders
from apps.inventory.selectors import shipments_short_of_stock
from apps.timeline.models import Order, Reference, Shipment, ShipmentLine
from apps.timeline.services import _Batch, _load_references
from tests.factories import OrderFactory, PartnerFactory, ShipmentFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner"),
]
SIZE = 100_000
LINKS = Shipment.orders.through


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _copies(template: Order | Shipment, prefix: str) -> None:
    """``SIZE`` copies of ``template``, numbered ``prefix1`` to ``prefixSIZE``, in one statement."""
    quote, model = connection.ops.quote_name, type(template)
    names = ", ".join(quote(f.column) for f in model._meta.concrete_fields if f.column not in ("id", "number"))
    table = _table(model)
    with connection.cursor() as cursor:
        cursor.execute(  # our own quoted table and column names only; the rest are parameters
            f"INSERT INTO {table} (number, {names}) SELECT %s || n, {names} "  # noqa: S608
            f"FROM {table}, generate_series(1, %s) AS n WHERE id = %s",
            [prefix, SIZE, template.pk],
        )


@pytest.fixture
def large_tables() -> None:
    """100,000 orders with their references, each shipped by a shipment of one line."""
    _copies(OrderFactory(number="SO-0"), "SO-")
    _copies(ShipmentFactory(number="SH-0", warehouse=PartnerFactory(kind="warehouse")), "SH-")
    orders, shipments = _table(Order), _table(Shipment)
    with connection.cursor() as cursor:
        for statement in (
            f"INSERT INTO {_table(Reference)} (kind, value, order_id, created_at) "  # noqa: S608
            f"SELECT 'order', number, id, now() FROM {orders}",
            f"INSERT INTO {_table(LINKS)} (order_id, shipment_id) SELECT o.id, s.id FROM {orders} o "  # noqa: S608
            f"JOIN {shipments} s ON substr(s.number, 4) = substr(o.number, 4)",
            f"INSERT INTO {_table(ShipmentLine)} (shipment_id, sku, quantity, uom) "  # noqa: S608
            f"SELECT id, 'SKU-1', 5, 'EA' FROM {shipments}",
            f"ANALYZE {orders}, {shipments}, {_table(Reference)}, {_table(LINKS)}, {_table(ShipmentLine)}",
        ):
            cursor.execute(statement)  # our own quoted table names only


def _read_whole(run: Callable[[], object]) -> set[str]:
    """The tables that the queries ``run`` makes read whole, by the plans PostgreSQL makes for them."""
    with CaptureQueriesContext(connection) as queries:
        run()
    tables: set[str] = set()
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {query['sql']}")
            output = cursor.fetchone()[0]
            (plan,) = json.loads(output) if isinstance(output, str) else output
            tables |= _seq_scans(plan["Plan"])
    return tables


def _seq_scans(plan: dict) -> set[str]:
    own = {plan["Relation Name"]} if plan["Node Type"] == "Seq Scan" else set()
    return own.union(*(_seq_scans(child) for child in plan.get("Plans", [])))


def _every(step: int, prefix: str, model: type[Model]) -> list[int]:
    wanted = [f"{prefix}{n}" for n in range(1, SIZE, step)]
    return list(model.objects.filter(number__any=wanted).values_list("pk", flat=True))


LARGE = {_table(model).strip('"') for model in (Order, Shipment, Reference, LINKS, ShipmentLine)}


def test_the_references_of_a_batch(large_tables) -> None:
    """A file of 1,500 events names as many references."""
    batch = _Batch(partners={}, channels={})
    keys = {("order", f"SO-{n}") for n in range(1, SIZE, SIZE // 1500)}

    assert _read_whole(lambda: _load_references(keys, batch)) & LARGE == set()
    assert len(batch.references) == len(keys)


def test_the_shipments_of_the_orders_a_kpi_refresh_takes(large_tables) -> None:
    order_ids = _every(SIZE // 1500, "SO-", Order)

    assert _read_whole(lambda: _shipments_of_orders(set(order_ids))) & LARGE == set()


def test_the_stock_of_the_shipments_a_detection_judges(large_tables) -> None:
    shipment_ids = _every(SIZE // 800, "SH-", Shipment)

    assert _read_whole(lambda: list(shipments_short_of_stock(shipment_ids))) & LARGE == set()
