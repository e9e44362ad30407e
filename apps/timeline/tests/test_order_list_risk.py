"""The order list sorted and filtered by how likely an order is to miss its promise."""

import re

import pytest

from apps.predictions.models import OrderRisk
from apps.timeline.models import Order, Shipment
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


def numbers(response) -> list[str]:
    return re.findall(r'class="ident" href="/orders/\d+/">([^<]+)</a>', response.content.decode())


def with_risk(number: str, probability: float | None) -> Order:
    order = OrderFactory(number=number)
    if probability is not None:
        shipment = Shipment.objects.create(number=f"SH-{number}")
        OrderRisk.objects.create(order=order, shipment=shipment, late_probability=probability)
    return order


@pytest.fixture
def orders() -> list[Order]:
    return [with_risk(number, risk) for number, risk in [("SO-A", 0.3), ("SO-B", None), ("SO-C", 0.95), ("SO-D", 0.6)]]


def test_sorted_by_risk_the_most_likely_late_come_first_and_orders_without_a_risk_are_left_out(agent_client, orders):
    response = agent_client.get("/orders/", {"sort": "risk"})

    assert numbers(response) == ["SO-C", "SO-D", "SO-A"]
    assert "95&nbsp;%" in response.content.decode()


def test_the_list_keeps_the_orders_at_least_as_risky_as_asked(agent_client, orders):
    response = agent_client.get("/orders/", {"min_risk": "50"})

    assert sorted(numbers(response)) == ["SO-C", "SO-D"]


def test_a_risk_that_is_not_a_percentage_is_said_so(agent_client, orders):
    response = agent_client.get("/orders/", {"min_risk": "-5"})

    assert "min_risk: Ensure this value is greater than or equal to 0." in response.content.decode()


def test_pages_sorted_by_risk_walk_every_order_once_in_flat_queries(agent_client, django_assert_max_num_queries):
    risks = [0.1, 0.5, 0.5, 0.9, 0.25] * 12
    made = [with_risk(f"SO-R{i:03}", risk) for i, risk in enumerate(risks)]
    expected = [o.number for o, _ in sorted(zip(made, risks, strict=True), key=lambda pair: (-pair[1], -pair[0].pk))]

    with django_assert_max_num_queries(8):
        first = agent_client.get("/orders/", {"sort": "risk"})
    after = re.search(r'<a href="\?([^"]+)" rel="next">', first.content.decode()).group(1).replace("&amp;", "&")
    second = agent_client.get(f"/orders/?{after}")

    assert numbers(first) + numbers(second) == expected
