"""Stock positions from the ledger: counts, movements after them, full snapshots, the ERP's book,
units kept apart, duplicates ignored, and a movement's cost flat in the warehouse's history."""

import io
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.inventory.models import Allocation, InventoryPosition, LedgerEntry, StockFeed
from apps.inventory.selectors import positions
from apps.inventory.services import ledger_catch_up
from apps.timeline.services import apply_events
from tests.stories import at, event, events, order_created, ref

pytestmark = pytest.mark.django_db


def stock(event_id: str, kind: str, hours: float, *lines: tuple[str, str], **attributes: Any) -> dict[str, Any]:
    """A snapshot or movement of DC1 (unless ``warehouse`` says otherwise); lines are (sku, qty[ uom])."""
    attributes.setdefault("warehouse", "DC1")
    return event(
        event_id,
        f"inventory.{kind}",
        hours,
        lines=[{"sku": sku, "quantity": qty.split()[0], "uom": (qty.split()[1:] or ["EA"])[0]} for sku, qty in lines],
        attributes=attributes,
    )


def send(*items: dict[str, Any], partner: str = "DC1") -> None:
    result = apply_events(events(*items, partner=partner))
    assert not result.rejected, result.rejected


def on_hand(sku: str = "SKU-1", warehouse: str = "DC1", uom: str = "EA") -> Decimal | None:
    return InventoryPosition.objects.get(warehouse__code=warehouse, sku=sku, uom=uom).quantity


def test_a_snapshot_sets_the_position_and_later_movements_apply_on_top(partners):
    send(stock("s1", "snapshot", 0, ("SKU-1", "100")))
    send(stock("m1", "adjusted", 2, ("SKU-1", "-7")), stock("m2", "adjusted", 3, ("SKU-1", "5")))

    position = InventoryPosition.objects.get(sku="SKU-1")
    assert (position.quantity, position.as_of.isoformat()) == (Decimal("98"), at(3))


def test_a_movement_reported_late_counts_only_if_it_happened_after_the_snapshot(partners):
    send(stock("s1", "snapshot", 5, ("SKU-1", "100")))
    send(stock("before", "adjusted", 4, ("SKU-1", "-30")))  # already in the count
    assert on_hand() == Decimal("100")

    send(stock("after", "adjusted", 6, ("SKU-1", "-30")))
    assert on_hand() == Decimal("70")


def test_a_late_older_snapshot_changes_nothing_and_a_newer_one_keeps_the_movements_after_it(partners):
    send(stock("m1", "adjusted", 8, ("SKU-1", "-4")))
    send(stock("new", "snapshot", 6, ("SKU-1", "50")))
    assert on_hand() == Decimal("46")

    send(stock("old", "snapshot", 1, ("SKU-1", "999")))
    assert on_hand() == Decimal("46")


def test_a_partial_snapshot_leaves_other_skus_and_a_full_one_counts_them_zero(partners):
    send(stock("s1", "snapshot", 0, ("SKU-1", "10"), ("SKU-2", "20")))
    send(stock("partial", "snapshot", 1, ("SKU-1", "11")))
    assert (on_hand("SKU-1"), on_hand("SKU-2")) == (Decimal("11"), Decimal("20"))

    send(stock("full", "snapshot", 2, ("SKU-1", "12"), snapshot="full"))
    assert (on_hand("SKU-1"), on_hand("SKU-2")) == (Decimal("12"), Decimal("0"))


def test_a_sku_first_seen_after_a_full_snapshot_starts_from_zero_as_of_it(partners):
    send(stock("full", "snapshot", 5, ("SKU-1", "12"), snapshot="full"))
    send(stock("before", "adjusted", 4, ("SKU-9", "7")), stock("after", "adjusted", 6, ("SKU-9", "3")))

    assert on_hand("SKU-9") == Decimal("3")


def test_the_parts_of_one_full_snapshot_do_not_zero_each_other(partners):
    send(stock("s0", "snapshot", 0, ("SKU-1", "1"), ("SKU-2", "2"), ("SKU-3", "3")))
    send(stock("full-2", "snapshot", 5, ("SKU-2", "22"), snapshot="full", part="2/2"))
    send(stock("full-1", "snapshot", 5, ("SKU-1", "11"), snapshot="full", part="1/2"))

    assert [on_hand(sku) for sku in ("SKU-1", "SKU-2", "SKU-3")] == [Decimal("11"), Decimal("22"), Decimal("0")]


def test_the_erps_snapshot_is_book_stock_and_never_overwrites_on_hand(partners):
    send(stock("wms", "snapshot", 0, ("SKU-1", "100")))
    send(stock("erp", "snapshot", 1, ("SKU-1", "90")), partner="ERP")
    send(stock("erp-move", "adjusted", 2, ("SKU-1", "-5")), partner="ERP")

    position = positions().get(sku="SKU-1")
    assert (position.quantity, position.book_quantity, position.difference) == (
        Decimal("100"),
        Decimal("85"),
        Decimal("15"),
    )
    assert set(StockFeed.objects.values_list("view", flat=True)) == {"on_hand", "book"}


def test_quantities_in_other_units_are_other_positions_never_converted(partners):
    send(stock("s1", "snapshot", 0, ("SKU-1", "24 EA"), ("SKU-1", "2 CS")))
    send(stock("m1", "adjusted", 1, ("SKU-1", "-1 CS")))

    assert (on_hand(uom="EA"), on_hand(uom="CS")) == (Decimal("24"), Decimal("1"))


def test_a_duplicate_movement_applies_once(partners):
    send(stock("s1", "snapshot", 0, ("SKU-1", "10")))
    move = stock("m1", "adjusted", 1, ("SKU-1", "-3"))
    send(move)
    send(move, move)

    assert on_hand() == Decimal("7")
    assert LedgerEntry.objects.filter(event_id="m1").count() == 1


def test_a_movement_costs_the_same_queries_whatever_the_warehouses_history(partners, django_assert_num_queries):
    send(stock("s1", "snapshot", 0, ("SKU-1", "1000"), ("SKU-2", "5")))
    with CaptureQueriesContext(connection) as first:
        send(stock("probe-1", "adjusted", 500, ("SKU-1", "-1")))
    send(*(stock(f"h{n}", "adjusted", 1 + n / 100, ("SKU-1", "1"), ("SKU-2", "1")) for n in range(300)))
    send(*(stock(f"s{n}", "snapshot", 2 + n / 100, (f"SKU-{n}", "4")) for n in range(3, 60)))

    with django_assert_num_queries(len(first.captured_queries)):
        send(stock("probe-2", "adjusted", 600, ("SKU-1", "-1")))
    assert on_hand() == Decimal("1298")


def test_released_orders_allocate_their_lines_until_they_ship(partners):
    lines = [{"sku": "SKU-1", "quantity": "4"}, {"sku": "SKU-2", "quantity": "1"}]
    send(order_created("SO-1", lines=lines), order_created("SO-2", lines=lines[:1]), partner="ERP")
    send(
        event("rel-1", "order.released", 1, ref("order", "SO-1"), attributes={"warehouse": "DC2"}),
        event("rel-2", "order.released", 1, ref("order", "SO-2")),
        partner="ERP",
    )
    rows = set(Allocation.objects.values_list("order__number", "sku", "quantity", "warehouse__code"))
    assert rows == {("SO-1", "SKU-1", 4, "DC2"), ("SO-1", "SKU-2", 1, "DC2"), ("SO-2", "SKU-1", 4, None)}

    send(
        event("asn", "shipment.manifested", 3, ref("shipment", "SH-1"), ref("order", "SO-1"), lines=lines),
        partner="DC2",
    )
    assert set(Allocation.objects.values_list("order__number", flat=True)) == {"SO-2"}


def test_catching_up_books_stored_stock_events_the_ledger_misses_once(partners, settings):
    settings.TIMELINE_REACTIONS = [r for r in settings.TIMELINE_REACTIONS if "inventory" not in r]
    send(stock("s1", "snapshot", 0, ("SKU-1", "10")), stock("m1", "adjusted", 1, ("SKU-1", "-3")))
    send(stock("m2", "adjusted", 2, ("SKU-1", "-1")))
    assert not InventoryPosition.objects.exists()

    call_command("inventory_catch_up", stdout=io.StringIO())
    assert ledger_catch_up() == 0

    assert on_hand() == Decimal("6")
    assert LedgerEntry.objects.count() == 3
