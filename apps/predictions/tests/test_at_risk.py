"""The at-risk rule on the predicted probability: a threshold per customer, opening and closing."""

import pytest
import time_machine
from django.core.exceptions import ValidationError

from apps.exceptions.models import ExceptionCase
from apps.exceptions.services import builtin_rules_ensure, detect
from apps.partners.models import Partner
from apps.predictions.models import Prediction, RiskThreshold
from apps.predictions.services import profiles_rebuild
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Shipment
from tests.factories import PartnerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers() -> dict[str, Partner]:
    builtin_rules_ensure()
    carrier()
    careful = PartnerFactory(code="CAREFUL", kind=Partner.Kind.CUSTOMER)
    RiskThreshold.objects.create(customer=careful, open_above=0.7, close_below=0.4)
    return {"careful": careful, "plain": PartnerFactory(code="PLAIN", kind=Partner.Kind.CUSTOMER)}


def shipment_of(customer: str) -> Shipment:
    apply(shipment_events(f"{customer}-1", pickup=0, promised=40, customer=customer))
    return Shipment.objects.get(number=f"{customer}-1")


def at_risk(shipment: Shipment, probability: float) -> list[ExceptionCase]:
    Prediction.objects.update_or_create(
        shipment=shipment, defaults={"as_of": at(1), "basis": "model", "late_probability": probability}
    )
    detect(now=at(2))
    return list(
        ExceptionCase.objects.filter(rule__code="at_risk", shipment=shipment, status__in=["open", "acknowledged"])
    )


def test_a_case_opens_above_the_customers_threshold_and_closes_only_below_the_lower_one(customers):
    shipment = shipment_of("CAREFUL")
    assert at_risk(shipment, 0.6) == []
    [case] = at_risk(shipment, 0.75)
    assert case.summary == f"Shipment {shipment.number} expected after the promised date"
    assert at_risk(shipment, 0.5) == [case]  # wavering between the two: stays open
    assert at_risk(shipment, 0.35) == []
    case.refresh_from_db()
    assert (case.status, case.resolution) == ("resolved", "auto")


def test_a_customer_without_a_threshold_gets_the_default(customers):
    careful, plain = shipment_of("CAREFUL"), shipment_of("PLAIN")
    assert at_risk(careful, 0.6) == []
    assert len(at_risk(plain, 0.6)) == 1
    assert at_risk(plain, RiskThreshold.DEFAULT_CLOSE_BELOW - 0.01) == []


def test_a_threshold_must_close_at_or_below_where_it_opens(customers):
    threshold = RiskThreshold(customer=customers["plain"], open_above=0.3, close_below=0.5)
    with pytest.raises(ValidationError, match="Need 0 ≤ close below ≤ open above ≤ 1"):
        threshold.full_clean()


def test_a_slow_lane_raises_the_case_as_soon_as_the_shipment_is_picked_up(
    customers, django_capture_on_commit_callbacks
):
    apply(*(shipment_events(f"H{i}", pickup=24 * i, delivered=24 * i + 48) for i in range(16)))
    profiles_rebuild(now=at(24 * 20))

    with time_machine.travel(at(24 * 20 + 1), tick=False), django_capture_on_commit_callbacks(execute=True):
        apply(shipment_events("LATE", pickup=24 * 20, promised=24 * 20 + 40, customer="PLAIN"))

    shipment = Shipment.objects.get(number="LATE")
    assert shipment.prediction.late_probability > 0.9
    assert ExceptionCase.objects.filter(rule__code="at_risk", shipment=shipment, status="open").exists()
