"""The inventory exception rules: cases in the supply-chain queue that open when the stock is
wrong and close themselves when it is right again."""

from datetime import timedelta
from decimal import Decimal

import pytest

from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.services import builtin_rules_ensure, detect
from apps.inventory.models import StockFeed, StockTolerance
from apps.inventory.tests.test_services import send, stock
from tests.stories import T0, event, order_created, ref

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rules():
    builtin_rules_ensure()


def open_cases(rule: str) -> list[tuple[str, str]]:
    cases = ExceptionCase.objects.filter(rule__code=rule, status__in=ExceptionCase.OPEN_STATUSES)
    return sorted(cases.values_list("queue", "summary"))


def test_a_mismatch_beyond_tolerance_opens_a_case_and_a_recount_closes_it(partners):
    send(stock("wms", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "99")))
    send(stock("erp", "snapshot", 0, ("SKU-1", "90"), ("SKU-2", "100")), partner="ERP")  # SKU-2 within 2 %
    detect(now=T0 + timedelta(hours=1))
    assert open_cases("stock_mismatch") == [("supply_chain", "DC1 SKU-1: on hand 100.000 EA, book 90.000")]

    send(stock("recount", "snapshot", 2, ("SKU-1", "90")))
    detect(now=T0 + timedelta(hours=3))
    assert open_cases("stock_mismatch") == []
    assert ExceptionCase.objects.get(rule__code="stock_mismatch").resolution == "auto"


def test_a_tolerance_in_units_for_a_warehouse_and_sku_wins_over_the_rules_percent(partners):
    send(stock("wms", "snapshot", 0, ("SKU-1", "100"), ("SKU-2", "100")))
    send(stock("erp", "snapshot", 0, ("SKU-1", "95"), ("SKU-2", "95")), partner="ERP")
    StockTolerance.objects.create(warehouse=partners["DC1"], sku="SKU-1", units=Decimal(5))
    StockTolerance.objects.create(warehouse=partners["DC1"], percent=Decimal("0.01"))

    detect(now=T0 + timedelta(hours=1))

    assert [summary.split(":")[0] for _, summary in open_cases("stock_mismatch")] == ["DC1 SKU-2"]


def test_a_snapshot_late_against_the_cadence_opens_a_case_and_the_next_snapshot_closes_it(partners):
    send(stock("daily-1", "snapshot", 0, ("SKU-1", "10")))
    StockFeed.objects.filter(view="on_hand").update(cadence=timedelta(hours=24))

    detect(now=T0 + timedelta(hours=27))  # due at 24 h, within the 4 h grace
    assert open_cases("stock_snapshot_stale") == []
    detect(now=T0 + timedelta(hours=29))
    assert [queue for queue, _ in open_cases("stock_snapshot_stale")] == ["supply_chain"]

    send(stock("daily-2", "snapshot", 28, ("SKU-1", "10")))
    detect(now=T0 + timedelta(hours=30))
    assert open_cases("stock_snapshot_stale") == []


def test_more_promised_than_on_hand_opens_a_case_until_the_order_ships(partners):
    send(stock("wms", "snapshot", 0, ("SKU-1", "3")))
    send(order_created("SO-1", lines=[{"sku": "SKU-1", "quantity": "5"}]), partner="ERP")
    send(event("rel", "order.released", 1, ref("order", "SO-1"), attributes={"warehouse": "DC1"}), partner="ERP")
    detect(now=T0 + timedelta(hours=2))
    assert open_cases("negative_atp") == [("supply_chain", "DC1 SKU-1: 5.000 EA promised, 3.000 on hand")]

    send(event("asn", "shipment.manifested", 3, ref("shipment", "SH-1"), ref("order", "SO-1")))
    detect(now=T0 + timedelta(hours=4))
    assert open_cases("negative_atp") == []


def test_the_stock_rules_respect_their_warehouse_scope(partners):
    send(stock("wms", "snapshot", 0, ("SKU-1", "100")))
    send(stock("erp", "snapshot", 0, ("SKU-1", "10")), partner="ERP")
    ExceptionRule.objects.filter(code="stock_mismatch").update(scope_partner=partners["DC2"])
    detect(now=T0 + timedelta(hours=1))

    assert open_cases("stock_mismatch") == []


def ship(number: str, hours: float, quantity: str) -> None:
    send(order_created(number, lines=[{"sku": "SKU-1", "quantity": quantity}]), partner="ERP")
    lines = [{"sku": "SKU-1", "quantity": quantity}]
    refs = (ref("shipment", f"SH-{number}"), ref("order", number))
    send(event(f"{number}-asn", "shipment.manifested", hours, *refs, lines=lines, attributes={"warehouse": "DC1"}))


def test_a_shipment_of_stock_received_since_the_count_or_picked_as_reported_is_not_short(partners):
    send(stock("count", "snapshot", 0, ("SKU-1", "2")))
    send(stock("receipt", "adjusted", 1, ("SKU-1", "4")), stock("pick", "adjusted", 2, ("SKU-1", "-6")))
    ship("SO-1", 3, "6")
    ship("SO-2", 4, "7")

    detect(now=T0 + timedelta(hours=5))

    assert open_cases("shipped_without_stock") == [
        ("supply_chain", "Shipment SH-SO-2 shipped more than its warehouse had on hand")
    ]


def test_a_tolerance_entered_for_a_sku_matches_it_whatever_its_case_and_spaces(partners):
    tolerance = StockTolerance(sku=" sku-1 ", units=Decimal(20))
    tolerance.full_clean()
    tolerance.save()
    send(stock("wms", "snapshot", 0, ("SKU-1", "100")))
    send(stock("erp", "snapshot", 0, ("SKU-1", "90")), partner="ERP")

    detect(now=T0 + timedelta(hours=1))

    assert open_cases("stock_mismatch") == []
