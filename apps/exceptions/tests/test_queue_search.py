"""The queue's search box: paste a reference (or type its beginning) and see the cases about it."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.exceptions import selectors
from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.roles import roles_ensure
from apps.partners.models import Partner
from apps.timeline.models import Order, Reference, Shipment

pytestmark = pytest.mark.django_db
NOW = timezone.now()


@pytest.fixture
def agent(client, django_user_model):
    user = django_user_model.objects.create_user(username="agent")
    user.groups.set(roles_ensure().values())
    client.force_login(user)
    return client


@pytest.fixture
def rule() -> ExceptionRule:
    return ExceptionRule.objects.create(code="delivered_not_invoiced", title="Delivered, not invoiced", queue="finance")


def order_with(number: str, *, po: str = "", tracking: str = "") -> Order:
    """An order with its references as the pipeline stores them, shipped under ``tracking`` if given."""
    order = Order.objects.create(number=number)
    Reference.objects.create(kind="order", value=number, order=order)
    if po:
        Reference.objects.create(kind="po", value=po, order=order)
    if tracking:
        shipment = Shipment.objects.create(number=f"SH-{number}", tracking_number=tracking)
        shipment.orders.add(order)
        Reference.objects.create(kind="shipment", value=shipment.number, shipment=shipment)
        Reference.objects.create(kind="tracking", value=tracking, shipment=shipment)
    return order


def open_case(rule: ExceptionRule, *, order: Order | None = None, shipment: Shipment | None = None, **fields):
    opened = NOW - timedelta(hours=fields.pop("hours_ago", 10))
    subject = order or shipment
    return ExceptionCase.objects.create(
        rule=rule,
        queue=rule.queue,
        severity=rule.severity,
        subject_type="order" if order else "shipment",
        subject_id=subject.pk,
        order=order,
        shipment=shipment,
        summary=fields.pop("summary", f"{rule.title}: {subject.number}"),
        opened_at=opened,
        due_at=opened + timedelta(days=1),
        **fields,
    )


def listed(response) -> list[int]:
    assert response.status_code == 200
    return [int(pk) for pk in re.findall(r'<tr id="case-(\d+)"', response.content.decode())]


def search(agent, text: str, **params) -> list[int]:
    return listed(agent.get("/queues/finance/", {"q": text, **params}))


@pytest.fixture
def cases(rule) -> dict[str, ExceptionCase]:
    return {
        "acme": open_case(rule, order=order_with("SO-4712", po="PO-ACME-0091", tracking="1Z999AA10123456784")),
        "beta": open_case(rule, order=order_with("SO-5120", po="PO-BETA-0007", tracking="1Z999AA10999999999")),
        "other": open_case(rule, order=order_with("SO-6000")),
    }


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("SO-4712", ["acme"]),  # order number
        ("so-4712", ["acme"]),  # whatever the case
        ("PO-BETA-0007", ["beta"]),  # another reference of the order
        ("1Z999AA10123456784", ["acme"]),  # tracking number of the order's shipment
        ("1z 999 aa1 0123 456 784", ["acme"]),  # as a carrier prints it
        ("SH-SO-5120", ["beta"]),  # shipment number
        ("1Z999AA10", ["acme", "beta"]),  # the beginning of a tracking number
        ("PO-ACME", ["acme"]),  # the beginning of a PO
        ("Delivered, not invoiced: SO-6000", ["other"]),  # words of the summary
        ("not invoiced", ["acme", "beta", "other"]),
    ],
)
def test_a_search_finds_the_cases_of_the_orders_it_names(agent, cases, text, found):
    assert sorted(search(agent, text)) == sorted(cases[name].pk for name in found)


def test_a_case_about_a_shipment_is_found_by_its_tracking_number(agent, rule, cases):
    order_with("SO-7000", tracking="1ZSHIPMENTCASE01")
    shipment = Shipment.objects.get(tracking_number="1ZSHIPMENTCASE01")
    case = open_case(rule, shipment=shipment, summary="Manifested without a carrier scan")

    assert search(agent, "1ZSHIPMENTCASE01") == [case.pk]


@pytest.mark.parametrize("text", ["SO-9999", "SO-47121", "100%", "___"])
def test_a_search_that_matches_nothing_shows_an_empty_queue(agent, cases, text):
    response = agent.get("/queues/finance/", {"q": text})

    assert listed(response) == []
    assert "No cases match these filters." in response.content.decode()


def test_the_search_combines_with_the_other_filters(agent, rule, cases):
    acme = Partner.objects.create(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER)
    ExceptionCase.objects.filter(pk=cases["acme"].pk).update(customer=acme)

    assert search(agent, "1Z999AA10", customer="ACME") == [cases["acme"].pk]
    assert search(agent, "SO-4712", status="resolved") == []


def test_closed_and_other_queues_cases_are_not_found(agent, rule, cases):
    ExceptionCase.objects.filter(pk=cases["acme"].pk).update(status="resolved", resolved_at=NOW)
    elsewhere = ExceptionRule.objects.create(code="late_against_promise", title="Late", queue="customer_service")
    open_case(elsewhere, order=Order.objects.get(number="SO-5120"))

    assert search(agent, "1Z999AA10") == [cases["beta"].pk]


def next_page(response) -> dict[str, str]:
    found = re.search(r'<a href="\?([^"]*)" rel="next">', response.content.decode())
    assert found, "no next link"
    return dict(pair.split("=", 1) for pair in found.group(1).replace("&amp;", "&").split("&"))


def test_search_results_are_paged_oldest_first(agent, rule):
    found = [
        open_case(rule, order=order_with(f"SO-{i:04}", po=f"PO-7781-{i:03}"), hours_ago=200 - i) for i in range(60)
    ]
    for i in range(20):
        open_case(rule, order=order_with(f"SO-9{i:03}", po=f"PO-1234-{i:03}"), hours_ago=300 - i)

    first = agent.get("/queues/finance/", {"q": "PO-7781"})
    second = agent.get("/queues/finance/", next_page(first))

    assert next_page(first)["q"] == "PO-7781"
    assert listed(first) + listed(second) == [case.pk for case in found]
    assert "60 cases" in re.sub(r"\s+", " ", first.content.decode())


def test_a_search_costs_the_same_queries_whatever_it_finds(agent, rule):
    def queries(text: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert agent.get("/queues/finance/", {"q": text}).status_code == 200
        return len(captured)

    for i in range(3):
        open_case(rule, order=order_with(f"SO-A{i:03}", po=f"PO-FEW-{i:03}"))
    few = queries("PO-FEW")
    for i in range(40):
        open_case(rule, order=order_with(f"SO-B{i:03}", po=f"PO-MANY-{i:03}", tracking=f"1ZMANY{i:010}"))

    assert queries("PO-MANY") == few
    assert queries("nothing like it") <= few


def test_words_found_in_many_cases_list_them_all_oldest_first(agent, rule, monkeypatch):
    monkeypatch.setattr(selectors, "SUMMARY_BROAD", 3)  # read case by case, in the queue's order
    damaged = [
        open_case(rule, order=order_with(f"SO-D{i:02}"), summary=f"Damaged on arrival: SO-D{i:02}", hours_ago=90 - i)
        for i in range(55)
    ]
    open_case(rule, order=order_with("SO-X01"), summary="Refused at the door")

    first = agent.get("/queues/finance/", {"q": "damaged"})
    second = agent.get("/queues/finance/", next_page(first))

    assert listed(first) + listed(second) == [case.pk for case in damaged]


def test_the_beginning_of_a_reference_finds_the_cases_of_a_bounded_number_of_references(agent, rule, monkeypatch):
    monkeypatch.setattr(selectors, "PREFIX_REFERENCES", 3)
    exact = open_case(rule, order=order_with("SO-P", po="PO-BOUND"))
    for i in range(5):
        open_case(rule, order=order_with(f"SO-P{i}", po=f"PO-BOUND-{i}"))

    found = search(agent, "PO-BOUND")

    assert exact.pk in found  # as typed, whatever the bound
    assert len(found) <= 1 + 3
