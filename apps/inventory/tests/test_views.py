"""The inventory page, its CSV export, a position's history and ``GET /api/v1/inventory/``: the
figures a supply-chain manager reads, filtered; for people with the right only."""

import csv
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.inventory.models import InventoryPosition
from apps.inventory.tests.test_services import send, stock
from apps.partners.services import api_token_create
from tests.factories import UserFactory
from tests.stories import event, order_created, ref

pytestmark = pytest.mark.django_db
API = reverse("api-inventory")
PAGE = reverse("inventory")
READ = "inventory.view_inventoryposition"


@pytest.fixture
def stocked(partners):
    """DC1 counts 100 of SKU-1 (the ERP books 90) and 7 of SKU-2; DC2 counts 5 of SKU-1; an order
    of 8 SKU-1 is released to DC1."""
    send(stock("dc1", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "7")))
    send(stock("dc2", "snapshot", 0, ("SKU-1", "5"), warehouse="DC2"), partner="DC2")
    send(stock("erp", "snapshot", 0, ("SKU-1", "90"), ("SKU-2", "7")), partner="ERP")
    send(order_created("SO-1", lines=[{"sku": "SKU-1", "quantity": "8"}]), partner="ERP")
    send(event("rel", "order.released", 1, ref("order", "SO-1"), attributes={"warehouse": "DC1"}), partner="ERP")
    return partners


@pytest.fixture
def manager(client):
    client.force_login(UserFactory(permissions=[READ]))
    return client


def rows(response) -> list[tuple]:
    return [
        (r["warehouse"], r["sku"], r["on_hand"], r["book"], r["difference"], r["allocated"], r["atp"], r["mismatch"])
        for r in response.json()["results"]
    ]


def test_the_api_gives_on_hand_book_allocated_and_atp_per_warehouse(manager, stocked):
    response = manager.get(API, {"sku": "sku-1"})

    assert response.status_code == 200
    assert rows(response) == [
        ("DC1", "SKU-1", "100.000", "90.000", "10.000", "8.000", "92.000", True),
        ("DC2", "SKU-1", "5.000", None, None, "0.000", "5.000", False),
    ]


def test_the_api_filters_by_warehouse_and_mismatch(manager, stocked):
    assert [r[:2] for r in rows(manager.get(API, {"warehouse": "DC1"}))] == [("DC1", "SKU-1"), ("DC1", "SKU-2")]
    assert [r[:2] for r in rows(manager.get(API, {"mismatch": "true"}))] == [("DC1", "SKU-1")]


def test_the_api_refuses_bad_filters_with_the_field_at_fault(manager, stocked):
    response = manager.get(API, {"mismatch": "perhaps", "sku": "x" * 101})

    assert response.status_code == 400
    assert set(response.json()) == {"mismatch", "sku"}


def test_anonymous_visitors_partner_tokens_and_people_without_the_right_are_refused(client, stocked):
    assert client.get(API).status_code == 401
    _, raw = api_token_create(partner=stocked["DC1"], name="t")
    assert client.get(API, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 403
    client.force_login(UserFactory(permissions=["timeline.view_order"]))
    assert client.get(API).status_code == 403
    assert client.get(PAGE).status_code == 403


def test_the_page_and_the_api_cost_the_same_queries_for_a_few_or_many_positions(manager, stocked):
    with CaptureQueriesContext(connection) as few_page:
        manager.get(PAGE)
    with CaptureQueriesContext(connection) as few_api:
        manager.get(API)
    send(*(stock(f"more-{n}", "snapshot", 2, (f"SKU-X{n}", "3")) for n in range(40)))

    with CaptureQueriesContext(connection) as many_page:
        assert manager.get(PAGE).status_code == 200
    with CaptureQueriesContext(connection) as many_api:
        assert manager.get(API).status_code == 200
    assert len(many_page.captured_queries) == len(few_page.captured_queries)
    assert len(many_api.captured_queries) == len(few_api.captured_queries)


def test_the_page_searches_by_sku_and_shows_mismatches(manager, stocked):
    body = manager.get(PAGE, {"sku": "SKU-2"}).content.decode()
    assert "SKU-2" in body
    assert "SKU-1" not in body

    body = manager.get(PAGE, {"mismatch": "on"}).content.decode()
    assert "SKU-1" in body
    assert "SKU-2" not in body
    assert "mismatch" in body


def test_the_export_lists_every_selected_position_with_its_figures(manager, stocked):
    send(stock("odd", "snapshot", 0, ("=HYPERLINK(1)", "2")))
    response = manager.get(reverse("inventory-export"), {"warehouse": "DC1"})

    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0][:8] == ["warehouse", "sku", "uom", "on_hand", "book", "difference", "allocated", "atp"]
    assert ["DC1", "SKU-1", "EA", "100.000", "90.000", "10.000", "8.000", "92.000", "yes", "no"] in table
    assert any(row[1] == "'=HYPERLINK(1)" for row in table)
    assert {row[0] for row in table[1:]} == {"DC1"}


def test_a_positions_page_shows_its_movements_and_on_hand_over_time(manager, stocked):
    send(stock("pick", "adjusted", 3, ("SKU-1", "-30"), reason="pick"))
    position = InventoryPosition.objects.get(warehouse__code="DC1", sku="SKU-1")

    body = manager.get(reverse("inventory-position", args=[position.pk])).content.decode()

    assert "<svg" in body
    assert "On hand over time" in body
    assert body.index("pick") < body.index("dc1")  # newest first
    assert "70" in body
