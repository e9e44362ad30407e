"""The prediction where people work: on the order page, and the backtest on the dashboard."""

import pytest
from django.urls import reverse

from apps.partners.models import Partner
from apps.predictions.models import Prediction, RiskThreshold
from apps.predictions.services import backtest_run, predictions_refresh, profiles_rebuild
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Order, Shipment
from tests.factories import PartnerFactory, UserFactory

pytestmark = pytest.mark.django_db

READER = ["timeline.view_order", "timeline.view_shipment"]
DASHBOARD = ["dashboards.view_sla_dashboard"]


@pytest.fixture
def predicted() -> Order:
    """An order whose shipment was picked up on a lane with sixteen deliveries of 48 h."""
    carrier()
    apply(*(shipment_events(f"H{i}", pickup=24 * i, delivered=24 * i + 48, estimate=24 * i + 50) for i in range(16)))
    profiles_rebuild(now=at(24 * 20))
    apply(shipment_events("LIVE", pickup=24 * 20, estimate=24 * 20 + 30, promised=24 * 20 + 40))
    predictions_refresh(shipment_ids=[Shipment.objects.get(number="LIVE").id], now=at(24 * 20 + 1))
    return Order.objects.get(number="SO-LIVE")


def test_the_order_page_loads_the_prediction_next_to_the_carriers_estimate_and_the_promise(client, predicted):
    client.force_login(UserFactory(permissions=READER))
    page = client.get(reverse("order-detail", kwargs={"pk": predicted.pk}))
    assert reverse("order-prediction", kwargs={"order_id": predicted.pk}).encode() in page.content

    fragment = client.get(reverse("order-prediction", kwargs={"order_id": predicted.pk}))

    assert fragment.status_code == 200
    text = fragment.content.decode()
    prediction = Prediction.objects.get()
    assert prediction.p50 == at(24 * 20 + 48)
    for shown in ("Predicted delivery", "80 % between", "Risk of missing the promise", "Carrier's estimate"):
        assert shown in text
    assert f"{round(prediction.late_probability * 100)}&nbsp;%" in text
    assert "At risk" in text
    assert "Lane Dallas→NA-East with Fast Freight: 16 deliveries" in text
    assert "The carrier&#x27;s estimate is 18 h before our p50." in text


def test_a_delivered_shipment_shows_its_delivery_instead(client, predicted):
    apply(shipment_events("LIVE", pickup=24 * 20, delivered=24 * 20 + 45))
    client.force_login(UserFactory(permissions=READER))
    text = client.get(reverse("order-prediction", kwargs={"order_id": predicted.pk})).content.decode()
    assert "Delivered" in text
    assert "Risk of missing the promise" not in text


@pytest.mark.parametrize(("permissions", "status"), [(READER, 200), (["timeline.view_order"], 403), (DASHBOARD, 403)])
def test_the_prediction_needs_the_right_to_read_shipments(client, predicted, permissions, status):
    client.force_login(UserFactory(permissions=permissions))
    assert client.get(reverse("order-prediction", kwargs={"order_id": predicted.pk})).status_code == status


def test_an_unknown_order_is_not_found(client, db):
    client.force_login(UserFactory(permissions=READER))
    assert client.get(reverse("order-prediction", kwargs={"order_id": 987654})).status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(client, predicted):
    for url in (reverse("order-prediction", kwargs={"order_id": predicted.pk}), reverse("prediction-backtest")):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_the_backtest_page_shows_the_latest_figures_with_charts(client, predicted):
    backtest_run()
    client.force_login(UserFactory(permissions=DASHBOARD))

    text = client.get(reverse("prediction-backtest")).content.decode()

    assert "Predicted at pickup" in text
    assert "Fast Freight" in text
    assert text.count("<svg") == 2
    assert "Mean absolute error, hours" in text


def test_the_backtest_page_before_any_run_says_how_to_run_one(client, db):
    client.force_login(UserFactory(permissions=DASHBOARD))
    assert "python manage.py eta backtest" in client.get(reverse("prediction-backtest")).content.decode()


def test_the_backtest_page_is_for_the_dashboard_roles(client, db):
    client.force_login(UserFactory(permissions=READER))
    assert client.get(reverse("prediction-backtest")).status_code == 403


def test_the_at_risk_badge_follows_the_customers_threshold(client, predicted):
    client.force_login(UserFactory(permissions=READER))
    url = reverse("order-prediction", kwargs={"order_id": predicted.pk})
    Prediction.objects.update(late_probability=0.6)
    assert "badge at-risk" in client.get(url).content.decode()

    careful = PartnerFactory(code="CAREFUL", kind=Partner.Kind.CUSTOMER)
    RiskThreshold.objects.create(customer=careful, open_above=0.7, close_below=0.4)
    Order.objects.filter(pk=predicted.pk).update(customer=careful)
    assert "badge at-risk" not in client.get(url).content.decode()
