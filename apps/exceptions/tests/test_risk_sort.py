# ruff: noqa: F811 - the shared fixtures are imported from test_views and requested by name
"""Queues sorted and filtered by how likely a case's order is to miss its promise."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.services import case_risks_refresh, detect
from apps.exceptions.tests.test_views import agent, link, listed, make_case, partners, rules, text, user  # noqa: F401
from apps.predictions.models import OrderRisk
from apps.timeline.models import Shipment

pytestmark = pytest.mark.django_db


def risky(rules, number: str, probability: float | None, *, hours_ago: float = 10) -> ExceptionCase:
    case = make_case(rules["late_against_promise"], number, hours_ago=hours_ago)
    if probability is not None:
        shipment = Shipment.objects.create(number=f"SH-{number}")
        OrderRisk.objects.create(order=case.order, shipment=shipment, late_probability=probability)
    return case


@pytest.fixture
def queue(rules) -> dict[str, ExceptionCase]:
    made = {
        "unknown": risky(rules, "SO-U", None, hours_ago=50),
        "low": risky(rules, "SO-L", 0.2, hours_ago=40),
        "high": risky(rules, "SO-H", 0.9, hours_ago=30),
        "middle": risky(rules, "SO-M", 0.55, hours_ago=20),
    }
    case_risks_refresh()
    return made


def test_detection_copies_the_orders_risk_onto_its_open_cases(rules, queue):
    OrderRisk.objects.filter(order=queue["low"].order).update(late_probability=0.7)
    OrderRisk.objects.filter(order=queue["high"].order).delete()
    ExceptionRule.objects.update(enabled=False)  # these orders are not really late: keep their cases open

    detect(order_ids={queue["low"].order_id, queue["high"].order_id})

    risks = dict(ExceptionCase.objects.values_list("order__number", "late_probability"))
    assert risks == {"SO-U": None, "SO-L": 0.7, "SO-H": None, "SO-M": 0.55}


def test_the_queue_lists_the_most_likely_late_first_those_without_a_risk_last(agent, queue):
    response = agent.get("/queues/customer_service/", {"sort": "risk"})

    assert listed(response) == [queue[name].pk for name in ("high", "middle", "low", "unknown")]
    assert "Late risk 90&nbsp;%" in text(response)


def test_the_queue_keeps_the_cases_at_least_as_risky_as_asked(agent, queue):
    response = agent.get("/queues/customer_service/", {"min_risk": "50"})

    assert listed(response) == [queue["high"].pk, queue["middle"].pk]  # oldest first, as by default


def test_a_risk_outside_0_to_100_is_said_so(agent, queue):
    response = agent.get("/queues/customer_service/", {"min_risk": "150"})

    assert "min_risk: Ensure this value is less than or equal to 100." in text(response)


def test_pages_sorted_by_risk_walk_every_case_once(agent, rules):
    risks = [None, 0.1, 0.8, None, 0.1, 0.45, 0.8, 0.99] * 8
    made = [risky(rules, f"SO-R{i:03}", risk, hours_ago=200 - i) for i, risk in enumerate(risks)]
    case_risks_refresh()
    expected = sorted(zip(made, risks, strict=True), key=lambda pair: (pair[1] is None, -(pair[1] or 0), pair[0].pk))

    first = agent.get("/queues/customer_service/", {"sort": "risk"})
    second = agent.get("/queues/customer_service/", link(first, "next"))

    assert listed(first) + listed(second) == [case.pk for case, _ in expected]
    assert listed(agent.get("/queues/customer_service/", link(second, "prev"))) == listed(first)


def test_a_page_sorted_by_risk_costs_the_same_queries_however_many_cases(agent, rules, django_assert_max_num_queries):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert agent.get("/queues/customer_service/", {"sort": "risk", "min_risk": "10"}).status_code == 200
        return len(queries)

    for i in range(3):
        risky(rules, f"SO-A{i}", 0.5)
    case_risks_refresh()
    few = count()
    for i in range(40):
        risky(rules, f"SO-B{i}", 0.3 + i / 100)
    case_risks_refresh()

    with django_assert_max_num_queries(few):
        agent.get("/queues/customer_service/", {"sort": "risk", "min_risk": "10"})


def test_the_api_filters_and_sorts_by_risk(agent, queue):
    riskiest = agent.get("/api/v1/cases/", {"sort": "risk", "min_risk": "0.3"}).json()
    everything = agent.get("/api/v1/cases/", {"sort": "risk", "queue": "customer_service"}).json()

    assert [(row["subject"]["order"], row["late_probability"]) for row in riskiest["results"]] == [
        ("SO-H", 0.9),
        ("SO-M", 0.55),
    ]
    assert [row["subject"]["order"] for row in everything["results"]] == ["SO-H", "SO-M", "SO-L", "SO-U"]


@pytest.mark.parametrize(("params", "field"), [({"min_risk": "2"}, "min_risk"), ({"sort": "loudest"}, "sort")])
def test_the_api_refuses_a_risk_it_cannot_read(agent, queue, params, field):
    response = agent.get("/api/v1/cases/", params)

    assert response.status_code == 400
    assert field in response.json()
