"""The at-risk list: the riskiest shipments on their way first, filtered, paged, for people who read shipments."""

import pytest
from django.urls import reverse

from apps.partners.models import Partner
from apps.predictions import views
from apps.predictions.models import Prediction
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Shipment
from tests.factories import PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = reverse("shipments-at-risk")
QUERIES = 7


def predicted(number: str, risk: float | None, customer: str = "ACME") -> None:
    apply(shipment_events(number, pickup=0, promised=40, customer=customer))
    shipment = Shipment.objects.get(number=number)
    Prediction.objects.create(
        shipment=shipment, as_of=at(1), stage="in_transit", basis="model", p50=at(48), late_probability=risk
    )


@pytest.fixture
def world():
    carrier()
    for code in ("ACME", "OTHER"):
        PartnerFactory(code=code, name=f"{code.title()} Corp", kind=Partner.Kind.CUSTOMER)
    predicted("LOW", 0.1)
    predicted("HIGH", 0.9)
    predicted("UNKNOWN", None)
    predicted("MID", 0.6, customer="OTHER")


@pytest.fixture
def reader(client):
    client.force_login(UserFactory(permissions=["timeline.view_order", "timeline.view_shipment"]))
    return client


def listed(response) -> list[str]:
    assert response.status_code == 200
    return [p.shipment.number for p in response.context["page"].items]


def test_the_riskiest_come_first_with_their_orders_and_customers(reader, world):
    response = reader.get(URL)
    assert listed(response) == ["HIGH", "MID", "LOW"]  # no risk known: not listed
    text = response.content.decode()
    assert "90&nbsp;%" in text
    assert "SO-HIGH" in text
    assert "Other Corp" in text
    assert "in transit" in text


def test_filters_by_risk_and_customer(reader, world):
    assert listed(reader.get(URL, {"min_risk": "0.5"})) == ["HIGH", "MID"]
    assert listed(reader.get(URL, {"customer": "ACME"})) == ["HIGH", "LOW"]


def test_a_risk_that_is_not_offered_is_refused_and_the_list_shown_whole(reader, world):
    response = reader.get(URL, {"min_risk": "0.42"})
    assert "Select a valid choice" in response.content.decode()
    assert listed(response) == ["HIGH", "MID", "LOW"]


def test_pages_follow_the_risk_and_cost_the_same_whatever_their_length(
    reader, world, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(views, "PER_PAGE", 2)
    # session, user, permissions; the page, its orders; the count
    with django_assert_max_num_queries(QUERIES):
        page = reader.get(URL).context["page"]
    assert [p.shipment.number for p in page.items] == ["HIGH", "MID"]
    assert [p.shipment.number for p in reader.get(URL, {"after": page.next_cursor}).context["page"].items] == ["LOW"]

    monkeypatch.setattr(views, "PER_PAGE", 50)
    for n in range(20):
        predicted(f"MORE{n}", 0.7)
    with django_assert_max_num_queries(QUERIES):
        assert len(listed(reader.get(URL))) == 23


def test_only_people_who_read_shipments_see_it(client, world):
    assert client.get(URL).url.startswith(reverse("login"))
    client.force_login(UserFactory(permissions=["timeline.view_order"]))
    assert client.get(URL).status_code == 403
