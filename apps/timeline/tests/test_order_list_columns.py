"""The order list shows each order's carrier, tracking numbers, promise and open cases, at a cost
that does not grow with the page: a page of 3 orders and a page of 50 take the same queries."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.partners.models import Partner
from apps.timeline.selectors import ORDER_LIST_ORDER, order_list
from controltower.keyset import keyset_page
from tests.factories import OrderFactory, ShipmentFactory, UserFactory

from .conftest import NOW

pytestmark = pytest.mark.django_db


def _case(rule: ExceptionRule, order, *, status: str = "open") -> ExceptionCase:
    return ExceptionCase.objects.create(
        rule=rule,
        queue=rule.queue,
        severity=rule.severity,
        subject_type="order",
        subject_id=order.pk,
        order=order,
        summary=f"{rule.title}: {order.number}",
        status=status,
        opened_at=NOW - timedelta(hours=3),
        due_at=NOW + timedelta(hours=21),
    )


@pytest.fixture
def rules() -> list[ExceptionRule]:
    return [
        ExceptionRule.objects.create(code="late_against_promise", title="Late", queue="customer_service"),
        ExceptionRule.objects.create(code="delivered_not_invoiced", title="Not invoiced", queue="finance"),
        ExceptionRule.objects.create(code="freight_unsettled", title="Freight unsettled", queue="finance"),
    ]


@pytest.fixture
def carriers() -> dict[str, Partner]:
    return {
        code: Partner.objects.create(code=code, name=name, kind=Partner.Kind.CARRIER)
        for code, name in [("UPSN", "UPS"), ("FDEG", "FedEx Ground")]
    }


def _orders(count: int, rules: list[ExceptionRule], carriers: dict[str, Partner]) -> None:
    """Orders each with two shipments (two carriers) and two open cases plus a closed one."""
    for n in range(count):
        order = OrderFactory(number=f"SO-5{n:05d}", ordered_at=NOW - timedelta(minutes=n))
        for suffix, carrier, minutes in (("A", "UPSN", 30), ("B", "FDEG", 10)):
            ShipmentFactory(
                number=f"SH-5{n:05d}-{suffix}",
                carrier=carriers[carrier],
                tracking_number=f"{carrier}{n:06d}",
                manifested_at=NOW - timedelta(minutes=minutes),
                orders=[order],
            )
        _case(rules[0], order)
        _case(rules[1], order, status="acknowledged")
        _case(rules[2], order, status="resolved")


def test_each_order_has_its_shipments_carriers_and_open_cases(rules, carriers):
    shipped = OrderFactory(number="SO-600001", ordered_at=NOW - timedelta(hours=2))
    ShipmentFactory(
        number="SH-2", carrier=carriers["FDEG"], tracking_number="FX-2", manifested_at=NOW - timedelta(hours=1)
    ).orders.add(shipped)
    ShipmentFactory(
        number="SH-1", carrier=carriers["UPSN"], tracking_number="1Z-1", manifested_at=NOW - timedelta(hours=2)
    ).orders.add(shipped)
    _case(rules[0], shipped)
    _case(rules[1], shipped, status="acknowledged")
    _case(rules[2], shipped, status="dismissed")
    quiet = OrderFactory(number="SO-600002", ordered_at=NOW - timedelta(hours=1))

    by_number = {order.number: order for order in order_list()}

    first = by_number["SO-600001"]
    assert [(s.carrier.name, s.tracking_number) for s in first.listed_shipments] == [
        ("UPS", "1Z-1"),
        ("FedEx Ground", "FX-2"),
    ]
    assert first.open_cases == 2  # open and acknowledged; the dismissed one is closed
    assert by_number[quiet.number].listed_shipments == []
    assert by_number[quiet.number].open_cases == 0


def test_the_list_page_shows_the_columns(client, rules, carriers):
    client.force_login(UserFactory(username="reader", permissions=["timeline.view_order"]))
    promised = timezone.now() + timedelta(days=3)
    order = OrderFactory(number="SO-700001", promised_at=promised)
    ShipmentFactory(number="SH-7", carrier=carriers["UPSN"], tracking_number="1Z999AA10123456784", orders=[order])
    _case(rules[0], order)
    _case(rules[1], order)

    page = re.sub(r"\s+", " ", client.get("/orders/").content.decode())

    head = page[page.index("<thead>") : page.index("</thead>")]
    for column in ("Order", "Customer", "Stage", "Carrier", "Tracking", "Promised", "Open cases", "Last event"):
        assert f"<th>{column}</th>" in head
    start = page.index(f'href="/orders/{order.pk}/"')
    row = page[start : page.index("</tr>", start)]
    assert '<span class="cell-line">UPS</span>' in row
    assert '<span class="ident">1Z999AA10123456784</span>' in row
    assert f'<time datetime="{timezone.localtime(promised).isoformat()}">' in row
    assert '<span class="count open-cases" title="Open exception cases">2</span>' in row


@pytest.mark.parametrize("orders", [3, 50])
def test_a_page_costs_the_same_queries_whatever_its_orders(rules, carriers, orders, django_assert_num_queries):
    _orders(orders, rules, carriers)

    # The orders of the page (with their open-case counts), their shipments with carriers, the count.
    with django_assert_num_queries(3):
        page = keyset_page(order_list(), ORDER_LIST_ORDER, size=50)
        shown = [(o.number, [s.carrier.name for s in o.listed_shipments], o.open_cases) for o in page.items]

    assert len(shown) == orders
    assert shown[0] == ("SO-500000", ["UPS", "FedEx Ground"], 2)


def test_the_order_list_view_stays_within_its_query_budget(client, rules, carriers, django_assert_max_num_queries):
    client.force_login(UserFactory(username="reader", permissions=["timeline.view_order"]))
    _orders(50, rules, carriers)

    with django_assert_max_num_queries(8):
        response = client.get("/orders/")

    body = response.content.decode()
    assert body.count('<span class="count open-cases" title="Open exception cases">2</span>') == 50
    assert body.count('<span class="cell-line">FedEx Ground</span>') == 50
