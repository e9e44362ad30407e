"""The at-risk rule on the predicted probability: one case per order, a threshold per customer,
opening and closing."""

from importlib import import_module

import pytest
import time_machine
from django.apps import apps as django_apps
from django.core.exceptions import ValidationError

from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.exceptions.services import builtin_rules_ensure, detect
from apps.partners.models import Partner
from apps.predictions.models import Prediction, RiskThreshold
from apps.predictions.services import order_risks_refresh, profiles_rebuild
from apps.predictions.tests.story import apply, at, carrier, shipment_events
from apps.timeline.models import Order, Shipment
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


def predict(shipment: Shipment, probability: float | None, reasons: tuple[str, ...] = ()) -> None:
    Prediction.objects.update_or_create(
        shipment=shipment,
        defaults={"as_of": at(1), "basis": "model", "late_probability": probability, "reasons": list(reasons)},
    )
    order_risks_refresh(order_ids=shipment.orders.values_list("id", flat=True))


def open_cases(order: Order) -> list[ExceptionCase]:
    return list(ExceptionCase.objects.filter(rule__code="at_risk", order=order, status__in=["open", "acknowledged"]))


def at_risk(shipment: Shipment, probability: float) -> list[ExceptionCase]:
    predict(shipment, probability)
    detect(now=at(2))
    return open_cases(shipment.orders.get())


def test_a_case_opens_above_the_customers_threshold_and_closes_only_below_the_lower_one(customers):
    shipment = shipment_of("CAREFUL")
    assert at_risk(shipment, 0.6) == []
    [case] = at_risk(shipment, 0.75)
    assert (case.subject_type, case.subject_id) == ("order", shipment.orders.get().pk)
    assert case.summary == f"Order SO-{shipment.number}: 75% likely after the promised date; shipment {shipment.number}"
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
    assert ExceptionCase.objects.filter(rule__code="at_risk", order__number="SO-LATE", status="open").exists()


def two_shipments(customer: str = "PLAIN") -> tuple[Order, Shipment, Shipment]:
    """One order split in two shipments on their way."""
    first = shipment_events("SPLIT-A", pickup=0, promised=40, customer=customer)
    second = [
        {**item, "event_id": item["event_id"].replace("SPLIT-A", "SPLIT-B")}
        for item in shipment_events("SPLIT-B", pickup=2, promised=40, customer=customer)
        if item["kind"] != "order.created"
    ]
    for item in second:
        item["references"] = [
            {**ref, "value": "SO-SPLIT-A"} if ref["kind"] == "order" else ref for ref in item["references"]
        ]
    apply(first, second)
    order = Order.objects.get(number="SO-SPLIT-A")
    return order, Shipment.objects.get(number="SPLIT-A"), Shipment.objects.get(number="SPLIT-B")


def test_an_order_in_two_shipments_has_one_case_naming_the_riskiest_shipment_and_its_reasons(customers):
    order, calm, risky = two_shipments()
    predict(calm, 0.55, ("Lane Dallas→NA-East with Fast Freight: 40 deliveries.",))
    predict(risky, 0.8, ("Lane Dallas→NA-East with Fast Freight: 40 deliveries.", "Promised in 38 h."))

    detect(now=at(3))

    [case] = open_cases(order)
    assert case.shipment == risky
    assert case.summary == (
        "Order SO-SPLIT-A: 80% likely after the promised date; shipment SPLIT-B: "
        "Lane Dallas→NA-East with Fast Freight: 40 deliveries. Promised in 38 h."
    )
    assert ExceptionCase.objects.filter(rule__code="at_risk").count() == 1


def test_the_order_stays_at_risk_while_any_shipment_is(customers):
    """Its risk is the highest of its shipments': one shipment calming down does not close it."""
    order, first, second = two_shipments()
    predict(first, 0.9)
    predict(second, 0.2)
    detect(now=at(3))
    [case] = open_cases(order)

    predict(first, 0.1)
    predict(second, 0.4)  # between the thresholds: the case holds
    detect(now=at(4))
    assert open_cases(order) == [case]

    predict(second, 0.1)
    detect(now=at(5))
    assert open_cases(order) == []


def test_a_shipment_without_a_probability_whose_carrier_estimate_is_late_makes_its_order_at_risk(customers):
    order, calm, unknown = two_shipments()
    predict(calm, 0.1)
    eta = {
        "kind": "shipment.eta_updated",
        "occurred_at": at(3).isoformat(),
        "estimated_delivery_at": at(100).isoformat(),
    }
    apply([{**eta, "event_id": "B-eta", "references": [{"kind": "tracking", "value": "TRK-SPLIT-B"}]}])

    detect(now=at(4))

    [case] = open_cases(order)
    assert case.shipment == unknown
    assert case.summary == "Order SO-SPLIT-A: shipment SPLIT-B estimated by Fast Freight after the promised date"


def test_open_shipment_cases_close_on_upgrade_and_detection_opens_one_per_order(customers):
    """Cases opened one per shipment before the rule went per order close with a note, and the
    orders still at risk get their own case (no two open cases for one order's risk)."""
    order, first, second = two_shipments()
    rule = ExceptionRule.objects.get(code="at_risk")
    old = [
        ExceptionCase.objects.create(
            rule=rule,
            queue=rule.queue,
            severity=rule.severity,
            subject_type="shipment",
            subject_id=shipment.pk,
            order=order,
            shipment=shipment,
            summary=f"Shipment {shipment.number} expected after the promised date",
            opened_at=at(1),
            due_at=at(25),
        )
        for shipment in (first, second)
    ]
    predict(first, 0.9)

    import_module("apps.exceptions.migrations.0009_at_risk_per_order").close_shipment_cases(django_apps, None)
    detect(now=at(3))

    for case in old:
        case.refresh_from_db()
        assert (case.status, case.resolution) == ("resolved", "auto")
        assert "now one per order" in case.history.last().note
    [case] = open_cases(order)
    assert (case.subject_type, case.subject_id, case.shipment) == ("order", order.pk, first)
