"""Inventory accuracy and snapshot freshness per warehouse, measured for the SLA dashboard."""

from datetime import timedelta

import pytest
from django.urls import reverse

from apps.inventory.models import StockAccuracy
from apps.inventory.selectors import accuracy_board
from apps.inventory.services import stock_accuracy_record
from apps.inventory.tests.test_services import send, stock
from tests.factories import UserFactory
from tests.stories import T0

pytestmark = pytest.mark.django_db


def test_accuracy_is_the_share_of_compared_positions_within_tolerance_with_a_day_a_row(partners):
    send(stock("wms", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "50"), ("SKU-3", "9"), ("SKU-ONLY-WMS", "1")))
    send(stock("erp", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "40"), ("SKU-3", "9")), partner="ERP")
    send(stock("dc2", "snapshot", -30, ("SKU-1", "5"), warehouse="DC2"), partner="DC2")

    assert stock_accuracy_record(now=T0 + timedelta(hours=1)) == 2
    send(stock("recount", "snapshot", 10, ("SKU-2", "40")))
    stock_accuracy_record(now=T0 + timedelta(hours=12))  # the same day: replaces the morning's figure
    stock_accuracy_record(now=T0 + timedelta(days=1, hours=1))

    rows = {(r.day.day, r.warehouse.code): (r.within, r.compared, r.snapshot_late) for r in StockAccuracy.objects.all()}
    assert rows == {
        (2, "DC1"): (3, 3, False),
        (2, "DC2"): (0, 0, True),
        (3, "DC1"): (3, 3, False),
        (3, "DC2"): (0, 0, True),
    }


def test_the_board_gives_a_share_a_day_and_each_warehouses_latest_day(partners):
    send(stock("wms", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "50")))
    send(stock("erp", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "40")), partner="ERP")
    stock_accuracy_record(now=T0 + timedelta(hours=1))
    send(stock("recount", "snapshot", 20, ("SKU-2", "40")))
    stock_accuracy_record(now=T0 + timedelta(days=1))

    board = accuracy_board(start=T0.date(), end=T0.date() + timedelta(days=1))

    assert board.shares == [0.5, 1.0]
    assert [(row.warehouse.code, row.day) for row in board.latest] == [("DC1", T0.date() + timedelta(days=1))]


def test_the_sla_dashboard_shows_accuracy_per_warehouse_with_a_trend_and_a_drill_link(partners, client):
    send(stock("wms", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "50")))
    send(stock("erp", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "40")), partner="ERP")
    stock_accuracy_record(now=T0 + timedelta(hours=1))
    period = {"period": "custom", "start": str(T0.date()), "end": str(T0.date())}

    client.force_login(UserFactory(permissions=["dashboards.view_sla_dashboard"]))
    body = client.get(reverse("sla-dashboard"), period).content.decode()
    assert "Inventory accuracy" in body
    assert "50 %" in body
    assert "?warehouse=DC1" not in body  # no inventory right: no link to the page

    client.force_login(UserFactory(permissions=["dashboards.view_sla_dashboard", "inventory.view_inventoryposition"]))
    body = client.get(reverse("sla-dashboard"), period).content.decode()
    assert "?warehouse=DC1&amp;mismatch=on" in body
