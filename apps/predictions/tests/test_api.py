"""``GET /api/v1/predictions/``: the riskiest open shipments first, filtered; people with the right only."""

import pytest
from django.urls import reverse

from apps.partners.models import Partner
from apps.partners.services import api_token_create
from apps.predictions.models import Prediction
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Order, Shipment
from tests.factories import PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = reverse("api-predictions")


def predicted(number: str, risk: float | None, customer: str = "ACME") -> Shipment:
    apply(shipment_events(number, pickup=0, promised=40, customer=customer))
    shipment = Shipment.objects.get(number=number)
    Prediction.objects.create(
        shipment=shipment,
        as_of=at(1),
        basis="model",
        p50=at(48),
        late_probability=risk,
        reasons=[f"Reason for {number}."],
    )
    return shipment


@pytest.fixture
def world():
    carrier()
    for code in ("ACME", "OTHER"):
        PartnerFactory(code=code, kind=Partner.Kind.CUSTOMER)
    predicted("LOW", 0.1)
    predicted("HIGH", 0.9)
    predicted("NONE", None)
    predicted("MID", 0.6, customer="OTHER")


@pytest.fixture
def api(client):
    client.force_login(UserFactory(permissions=["timeline.view_shipment"]))
    return client


def shipments(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["shipment"] for row in response.json()["results"]]


def test_the_riskiest_come_first_and_those_without_a_risk_last(api, world):
    response = api.get(URL)
    assert shipments(response) == ["HIGH", "MID", "LOW", "NONE"]
    first = response.json()["results"][0]
    assert first["late_probability"] == 0.9
    assert first["carrier"] == "FAST"
    assert first["reasons"] == ["Reason for HIGH."]


def test_filters_by_risk_customer_and_order(api, world):
    assert shipments(api.get(URL, {"min_risk": "0.5"})) == ["HIGH", "MID"]
    assert shipments(api.get(URL, {"customer": "OTHER"})) == ["MID"]
    order = Order.objects.get(number="SO-LOW")
    assert shipments(api.get(URL, {"order": order.pk})) == ["LOW"]


@pytest.mark.parametrize("query", [{"min_risk": "1.5"}, {"min_risk": "high"}, {"order": "0"}])
def test_a_bad_filter_is_refused_with_the_field_named(api, world, query):
    response = api.get(URL, query)
    assert response.status_code == 400
    assert set(response.json()) == set(query)


def test_the_list_costs_the_same_queries_whatever_its_length(api, world, django_assert_max_num_queries):
    with django_assert_max_num_queries(8) as few:
        api.get(URL, {"min_risk": "0.5"})
    for n in range(20):
        predicted(f"MORE{n}", 0.8)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(shipments(api.get(URL))) == 24


def test_anonymous_visitors_partner_tokens_and_people_without_the_right_are_refused(client, world):
    assert client.get(URL).status_code == 401
    _, raw = api_token_create(partner=Partner.objects.get(code="FAST"), name="t")
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 403
    client.force_login(UserFactory(permissions=["timeline.view_order"]))
    assert client.get(URL).status_code == 403
