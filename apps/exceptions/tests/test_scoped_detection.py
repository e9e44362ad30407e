"""Detection after an apply: the same answers as the sweep about the touched subjects, written
with a bounded number of statements."""

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.exceptions.models import CaseEvent, ExceptionCase, ExceptionRule, SubjectType
from apps.exceptions.rules import DETECTORS, Hit, Scope
from apps.exceptions.services import _open, _resolve_automatically, builtin_rules_ensure, detect
from apps.partners.models import Partner
from apps.timeline.events import parse_events
from apps.timeline.models import Order
from apps.timeline.projections import shipments_of_orders
from apps.timeline.services import apply_events
from tests.test_convergence import CUSTOMERS, T0, histories, rolled_back

pytestmark = pytest.mark.django_db


@pytest.fixture
def rules() -> dict[str, ExceptionRule]:
    builtin_rules_ensure()
    return {rule.code: rule for rule in ExceptionRule.objects.all()}


def _about(hit: Hit, subject_type: str, scope: Scope) -> bool:
    """Whether a sweep's hit is about the scope: what a detection after an apply must find."""
    if subject_type == SubjectType.ORDER:
        return hit.subject_id in scope.order_ids
    if subject_type == SubjectType.SHIPMENT:
        return hit.subject_id in scope.shipment_ids
    if subject_type == SubjectType.FREIGHT_CHARGE:
        return hit.shipment_id in scope.shipment_ids
    return hit.order_id in scope.order_ids  # an invoice


def _partners() -> None:
    for code in CUSTOMERS:
        Partner.objects.create(code=code, name=code, kind=Partner.Kind.CUSTOMER)
    for code in ("UPSN", "ODFL"):
        Partner.objects.create(code=code, name=code, kind=Partner.Kind.CARRIER)
    Partner.objects.create(code="DC1", name="DC1", kind=Partner.Kind.WAREHOUSE)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(), data=st.data())
def test_the_touched_orders_get_the_sweeps_answer_about_them(rules, history, data):
    """For random histories, any touched orders, any time and any rule scope, each rule finds
    after an apply exactly the sweep's hits about the touched orders and their shipments."""
    with rolled_back():
        _partners()
        apply_events(parse_events(history))
        orders = sorted(Order.objects.values_list("id", flat=True))
        touched = set(data.draw(st.lists(st.sampled_from(orders), unique=True), label="touched")) if orders else set()
        scope = Scope(order_ids=touched, shipment_ids=shipments_of_orders(touched))
        now = T0 + timedelta(hours=data.draw(st.integers(0, 800), label="now"))
        customer = data.draw(st.sampled_from([None, *CUSTOMERS]), label="rule scoped to")
        for code, rule in rules.items():
            detector = DETECTORS[code]
            if not detector.order_scoped:
                continue
            rule.scope_customer_id = Partner.objects.get(code=customer).id if customer else None
            swept = sorted(
                (hit for hit in detector.find(rule, now, None) if _about(hit, detector.subject_type, scope)),
                key=lambda hit: hit.subject_id,
            )
            found = sorted(detector.find(rule, now, scope), key=lambda hit: hit.subject_id)
            assert found == swept, code


def _released(count: int) -> set[int]:
    at = (timezone.now() - timedelta(hours=30)).isoformat()
    events = []
    for n in range(count):
        ref = [{"kind": "order", "value": f"SO-{n}"}]
        events += [
            {"event_id": f"c{n}", "kind": "order.created", "occurred_at": at, "references": ref},
            {"event_id": f"r{n}", "kind": "order.released", "occurred_at": at, "references": ref},
        ]
    return apply_events(parse_events(events)).order_ids


@pytest.mark.parametrize("count", [1, 30])
def test_detection_after_an_apply_costs_the_same_statements_for_one_order_or_many(
    rules, count, django_assert_num_queries
):
    orders = _released(count)
    # The rules, the shipments and cases in scope, a read a rule, one insert of the cases and
    # one of their events, the risks, the queues to tell: the same however many orders.
    with django_assert_num_queries(15):
        report = detect(order_ids=orders)
    assert len(report.opened) == count
    assert CaseEvent.objects.filter(action=CaseEvent.Action.OPENED).count() == count


def test_a_subject_given_an_open_case_meanwhile_gets_no_second_one(rules):
    rule = rules["released_not_picked"]
    [order] = _released(1)
    detector = DETECTORS[rule.code]
    hits = {hit.subject_id: hit for hit in detector.find(rule, timezone.now(), None)}
    now = timezone.now()

    assert len(_open(rule, detector, hits, now, handled=set())) == 1
    # A concurrent run that had not seen it: the database keeps one open case.
    assert _open(rule, detector, hits, now, handled=set()) == []

    [case] = ExceptionCase.objects.filter(rule=rule, subject_id=order)
    assert (case.order_id, case.status, case.due_at) == (order, "open", now + rule.sla)
    assert list(case.history.values_list("action", flat=True)) == ["opened"]


def test_closing_automatically_leaves_a_case_a_person_closed_meanwhile(rules):
    orders = _released(2)
    opened = detect(order_ids=orders).opened
    person_closed, still_open = sorted(opened)
    ExceptionCase.objects.filter(id=person_closed).update(status="dismissed", resolution="not_an_issue")

    assert _resolve_automatically([person_closed, still_open], timezone.now()) == [still_open]

    closed = ExceptionCase.objects.get(id=person_closed)
    assert (closed.status, closed.resolution) == ("dismissed", "not_an_issue")
    auto = ExceptionCase.objects.get(id=still_open)
    assert (auto.status, auto.resolution) == ("resolved", "auto")
    events = CaseEvent.objects.filter(action=CaseEvent.Action.AUTO_CLOSED)
    assert list(events.values_list("case_id", "note")) == [(still_open, "The condition cleared.")]
