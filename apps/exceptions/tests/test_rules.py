"""Every built-in rule, proven through real events: it opens past its threshold and not before,
never twice, and closes itself when a later event clears the condition.

Each rule has a :class:`Scenario`: ``build(key, age)`` tells the story of one subject whose
condition has held for ``age`` (events dated in the past, nothing else faked), ``clear(key)``
tells the later event that ends it.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import FreightCharge, Invoice
from apps.exceptions.models import CaseEvent, ExceptionCase, ExceptionRule, SubjectType
from apps.exceptions.rules import DETECTORS
from apps.exceptions.services import builtin_rules_ensure, cases_close, detect
from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive, messages_replay
from apps.inventory.models import InventoryPosition, StockFeed
from apps.partners.models import Partner
from apps.timeline.events import EventSource, parse_events
from apps.timeline.models import Order, ParkedEvent, Shipment
from apps.timeline.services import ApplyResult, apply_events, retry_parked_events

pytestmark = pytest.mark.django_db

H = timedelta(hours=1)
# Rules whose default is "at once" are proven with this threshold instead.
TEST_THRESHOLD = 6 * H
OPEN = ExceptionCase.OPEN_STATUSES


# --- telling stories --------------------------------------------------------------------------


def ago(age: timedelta) -> str:
    return (timezone.now() - age).isoformat()


def ev(event_id: str, kind: str, age: timedelta, *refs: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": ago(age),
        "references": [{"kind": kind_, "value": value} for kind_, value in refs],
        **fields,
    }


def apply(*items: dict[str, Any]) -> ApplyResult:
    result = apply_events(parse_events(list(items)))
    assert not result.rejected
    return result


def created(
    key: str,
    age: timedelta,
    *,
    customer: str = "ACME",
    region: str = "EU-West",
    promised_in: timedelta | None = None,
    price: str = "10.00",
) -> dict[str, Any]:
    """An order of 5 x ``price`` EUR; ``promised_in`` from now (negative: a promise already past)."""
    order: dict[str, Any] = {"customer": customer, "region": region}
    if promised_in is not None:
        order["promised_at"] = (timezone.now() + promised_in).isoformat()
    return ev(
        f"{key}-created",
        "order.created",
        age,
        ("order", key),
        lines=[{"sku": "SKU-1", "quantity": "5", "unit_price": price}],
        currency="EUR",
        order=order,
    )


def manifested(
    key: str, age: timedelta, *orders: str, tracking: bool = True, carrier: str = "UPSN", **fields: Any
) -> dict[str, Any]:
    refs = [("shipment", f"SH-{key}"), ("pro", f"PRO-{key}"), *(("order", o) for o in orders or (key,))]
    if tracking:
        refs.append(("tracking", f"1Z-{key}"))
    attributes = {"carrier": carrier, "warehouse": "DCLYON"}
    return ev(f"{key}-manifested", "shipment.manifested", age, *refs, attributes=attributes, **fields)


def carrier_event(key: str, kind: str, age: timedelta, **fields: Any) -> dict[str, Any]:
    return ev(f"{key}-{kind}-{age.total_seconds()}", kind, age, ("tracking", f"1Z-{key}"), **fields)


def freight(key: str, kind: str, age: timedelta, **fields: Any) -> dict[str, Any]:
    return ev(f"{key}-{kind}", kind, age, ("pro", f"PRO-{key}"), ("invoice", f"FB-{key}"), **fields)


def freight_posted(key: str, age: timedelta, amount: str = "120.00", quoted: str | None = None) -> dict[str, Any]:
    attributes = {"carrier": "UPSN"} | ({"quoted_amount": quoted} if quoted else {})
    return freight(key, "freight.charge_posted", age, amount=amount, currency="USD", attributes=attributes)


def invoice(key: str, kind: str, age: timedelta, **fields: Any) -> dict[str, Any]:
    return ev(f"{key}-{kind}-{age.total_seconds()}", kind, age, ("invoice", f"INV-{key}"), ("order", key), **fields)


def order_id(key: str) -> int:
    return Order.objects.get(number=key).pk


def shipment_id(key: str) -> int:
    return Shipment.objects.get(number=f"SH-{key}").pk


# --- one scenario per rule --------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    subject_id: int
    order_ids: set[int]


def _released_not_picked(key: str, age: timedelta) -> Built:
    result = apply(created(key, age + H), ev(f"{key}-rel", "order.released", age, ("order", key)))
    return Built(order_id(key), result.order_ids)


def _picked_not_shipped(key: str, age: timedelta) -> Built:
    result = apply(
        created(key, age + 2 * H),
        ev(f"{key}-rel", "order.released", age + H, ("order", key)),
        ev(f"{key}-pick", "order.picked", age, ("order", key)),
    )
    return Built(order_id(key), result.order_ids)


def _manifested_without_tracking(key: str, age: timedelta) -> Built:
    result = apply(created(key, age + H), manifested(key, age, tracking=False))
    return Built(shipment_id(key), result.order_ids)


def _tracking_stale(key: str, age: timedelta) -> Built:
    result = apply(
        created(key, age + 3 * H),
        manifested(key, age + 2 * H),
        carrier_event(key, "shipment.picked_up", age + H),
        carrier_event(key, "shipment.in_transit", age),
    )
    return Built(shipment_id(key), result.order_ids)


def _late_against_promise(key: str, age: timedelta) -> Built:
    result = apply(created(key, age + 48 * H, promised_in=-age), manifested(key, age + 24 * H))
    return Built(order_id(key), result.order_ids)


def _at_risk(key: str, age: timedelta) -> Built:
    late = (timezone.now() + 72 * H).isoformat()
    result = apply(
        created(key, age + 2 * H, promised_in=48 * H),
        manifested(key, age + H),
        carrier_event(key, "shipment.eta_updated", age, estimated_delivery_at=late),
    )
    return Built(order_id(key), result.order_ids)


def _delivery_attempt_failed(key: str, age: timedelta) -> Built:
    result = apply(
        created(key, age + 3 * H),
        manifested(key, age + 2 * H),
        carrier_event(key, "shipment.out_for_delivery", age + H),
        carrier_event(key, "shipment.delivery_attempted", age, attributes={"reason": "NS"}),
    )
    return Built(shipment_id(key), result.order_ids)


def _damaged_or_refused(key: str, age: timedelta) -> Built:
    result = apply(
        created(key, age + 3 * H),
        manifested(key, age + 2 * H),
        carrier_event(key, "shipment.damaged", age),
    )
    return Built(shipment_id(key), result.order_ids)


def _delivered_not_invoiced(key: str, age: timedelta) -> Built:
    result = apply(
        created(key, age + 3 * H), manifested(key, age + 2 * H), carrier_event(key, "shipment.delivered", age)
    )
    return Built(order_id(key), result.order_ids)


def _invoice_held(key: str, age: timedelta) -> Built:
    result = apply(
        created(key, age + 3 * H),
        invoice(key, "invoice.generated", age + H, amount="50.00", currency="EUR"),
        invoice(key, "invoice.held", age, attributes={"reason": "quantity variance"}),
    )
    return Built(Invoice.objects.get(number=f"INV-{key}").pk, result.order_ids)


def _freight_unsettled(key: str, age: timedelta) -> Built:
    result = apply(created(key, age + 3 * H), manifested(key, age + 2 * H), freight_posted(key, age))
    return Built(FreightCharge.objects.get(number=f"FB-{key}").pk, result.order_ids)


def _freight_over_quote(key: str, age: timedelta) -> Built:
    result = apply(created(key, age + 3 * H), manifested(key, age + 2 * H), freight_posted(key, age, quoted="100.00"))
    return Built(FreightCharge.objects.get(number=f"FB-{key}").pk, result.order_ids)


def _parked(key: str, age: timedelta) -> Built:
    """A pick for an order nobody has told us about yet."""
    with time_machine.travel(timezone.now() - age):
        result = apply(ev(f"{key}-pick", "order.picked", timedelta(0), ("order", key)))
    assert [parked.event_id for parked in result.parked] == [f"{key}-pick"]
    return Built(ParkedEvent.objects.get(event_id=f"{key}-pick").pk, set())


def _dead_letter(key: str, age: timedelta) -> Built:
    """A message that failed ``age`` ago; whatever broke it has been fixed since."""
    body = json.dumps({"events": [created(key, age + H)]}).encode()
    erp = Partner.objects.get(code="ERP")
    message, _ = message_receive(body=body, source="api", partner=erp, format="json", enqueue=False)
    InboundMessage.objects.filter(pk=message.pk).update(
        status=InboundMessage.Status.DEAD, error=f"{key}: no mapping", processed_at=timezone.now() - age
    )
    return Built(message.pk, set())


def _replay(key: str) -> None:
    [message] = InboundMessage.objects.filter(status=InboundMessage.Status.DEAD, error__startswith=f"{key}:")
    assert messages_replay([message.pk]) == 1
    message_process(message.pk)
    message.refresh_from_db()
    assert message.status == InboundMessage.Status.PROCESSED


def _stock(key: str, kind: str, age: timedelta, sku: str, quantity: str, *, sender: str, warehouse: str) -> None:
    item = ev(f"{key}-{sender}-{kind}-{age}", f"inventory.{kind}", age, lines=[{"sku": sku, "quantity": quantity}])
    item["attributes"] = {"warehouse": warehouse}
    result = apply_events(parse_events([item], source=EventSource(partner=sender)))
    assert not result.rejected


def _stock_mismatch(key: str, age: timedelta) -> Built:
    """The warehouse counts 100, the ERP books 80."""
    _stock(key, "snapshot", age, f"SKU-{key}", "100", sender="DCLYON", warehouse="DCLYON")
    _stock(key, "snapshot", age, f"SKU-{key}", "80", sender="ERP", warehouse="DCLYON")
    return Built(InventoryPosition.objects.get(sku=f"SKU-{key}").pk, set())


def _recount(key: str) -> None:
    _stock(key, "snapshot", NOW, f"SKU-{key}", "80", sender="DCLYON", warehouse="DCLYON")


def _own_warehouse(key: str) -> str:
    return Partner.objects.get_or_create(code=f"DC-{key}", defaults={"name": key, "kind": Partner.Kind.WAREHOUSE})[
        0
    ].code


def _negative_atp(key: str, age: timedelta) -> Built:
    """5 released to a warehouse that has 2."""
    warehouse = _own_warehouse(key)
    _stock(key, "snapshot", age, "SKU-1", "2", sender=warehouse, warehouse=warehouse)
    apply(
        created(key, age + H),
        ev(f"{key}-released", "order.released", age, ("order", key), attributes={"warehouse": warehouse}),
    )
    return Built(InventoryPosition.objects.get(warehouse__code=warehouse).pk, set())


def _stale_snapshot(key: str, age: timedelta) -> Built:
    """A daily snapshot due ``age`` ago."""
    warehouse = _own_warehouse(key)
    _stock(key, "snapshot", age + timedelta(days=1), "SKU-1", "2", sender=warehouse, warehouse=warehouse)
    return Built(StockFeed.objects.get(warehouse__code=warehouse, view="on_hand").pk, set())


def _next_snapshot(key: str) -> None:
    _stock(key, "snapshot", NOW, "SKU-1", "2", sender=f"DC-{key}", warehouse=f"DC-{key}")


def _shipped_without_stock(key: str, age: timedelta) -> Built:
    """The warehouse counted 2, then shipped 5."""
    warehouse = _own_warehouse(key)
    _stock(key, "snapshot", age + 2 * H, "SKU-1", "2", sender=warehouse, warehouse=warehouse)
    lines = [{"sku": "SKU-1", "quantity": "5"}]
    attributes = {"carrier": "UPSN", "warehouse": warehouse}
    result = apply(
        created(key, age + 3 * H),
        ev(
            f"{key}-shipped",
            "shipment.manifested",
            age,
            ("shipment", f"SH-{key}"),
            ("order", key),
            lines=lines,
            attributes=attributes,
        ),
    )
    return Built(Shipment.objects.get(number=f"SH-{key}").pk, result.order_ids)


def _late_count(key: str) -> ApplyResult:
    """A count reported late, from just before the shipment: the stock was there. Stock events
    touch no order: the order's next event (or the sweep) judges the shipment again."""
    _stock(key, "snapshot", TEST_THRESHOLD + 2.5 * H, "SKU-1", "10", sender=f"DC-{key}", warehouse=f"DC-{key}")
    return ApplyResult(order_ids=set(Order.objects.filter(number=key).values_list("id", flat=True)))


NOW = timedelta(minutes=5)


@dataclass(frozen=True)
class Scenario:
    code: str
    build: Callable[[str, timedelta], Built]
    clear: Callable[[str], ApplyResult | None] | None
    subject_type: str

    def __str__(self) -> str:
        return self.code

    @property
    def threshold(self) -> timedelta:
        return DETECTORS[self.code].threshold or TEST_THRESHOLD

    @property
    def order_scoped(self) -> bool:
        return DETECTORS[self.code].order_scoped


S = SubjectType
SCENARIOS = [
    Scenario(
        "released_not_picked",
        _released_not_picked,
        lambda k: apply(ev(f"{k}-pick", "order.picked", NOW, ("order", k))),
        S.ORDER,
    ),
    Scenario("picked_not_shipped", _picked_not_shipped, lambda k: apply(manifested(k, NOW)), S.ORDER),
    Scenario(
        "manifested_without_tracking",
        _manifested_without_tracking,
        lambda k: apply(
            ev(f"{k}-trk", "shipment.tracking_assigned", NOW, ("shipment", f"SH-{k}"), ("tracking", f"1Z-{k}"))
        ),
        S.SHIPMENT,
    ),
    Scenario(
        "tracking_stale",
        _tracking_stale,
        lambda k: apply(carrier_event(k, "shipment.out_for_delivery", NOW)),
        S.SHIPMENT,
    ),
    Scenario(
        "late_against_promise",
        _late_against_promise,
        lambda k: apply(carrier_event(k, "shipment.delivered", NOW)),
        S.ORDER,
    ),
    Scenario(
        "at_risk",
        _at_risk,
        lambda k: apply(
            carrier_event(k, "shipment.eta_updated", NOW, estimated_delivery_at=(timezone.now() + 24 * H).isoformat())
        ),
        S.ORDER,
    ),
    Scenario(
        "delivery_attempt_failed",
        _delivery_attempt_failed,
        lambda k: apply(carrier_event(k, "shipment.delivered", NOW)),
        S.SHIPMENT,
    ),
    Scenario("damaged_or_refused", _damaged_or_refused, None, S.SHIPMENT),
    Scenario(
        "delivered_not_invoiced",
        _delivered_not_invoiced,
        lambda k: apply(invoice(k, "invoice.generated", NOW, amount="50.00", currency="EUR")),
        S.ORDER,
    ),
    Scenario(
        "invoice_held",
        _invoice_held,
        lambda k: apply(ev(f"{k}-inv-rel", "invoice.released", NOW, ("invoice", f"INV-{k}"))),
        S.INVOICE,
    ),
    Scenario(
        "freight_unsettled",
        _freight_unsettled,
        lambda k: apply(freight(k, "freight.charge_settled", NOW)),
        S.FREIGHT_CHARGE,
    ),
    Scenario(
        "freight_disputed_or_over_quote",
        _freight_over_quote,
        lambda k: apply(freight(k, "freight.charge_settled", NOW)),
        S.FREIGHT_CHARGE,
    ),
    Scenario("parked_too_long", _parked, lambda k: apply(created(k, 100 * H)), S.PARKED_EVENT),
    Scenario("dead_letter", _dead_letter, _replay, S.MESSAGE),
    Scenario("stock_mismatch", _stock_mismatch, _recount, S.STOCK_POSITION),
    Scenario("negative_atp", _negative_atp, lambda k: apply(manifested(k, NOW)), S.STOCK_POSITION),
    Scenario("stock_snapshot_stale", _stale_snapshot, _next_snapshot, S.STOCK_FEED),
    Scenario("shipped_without_stock", _shipped_without_stock, _late_count, S.SHIPMENT),
]
CLEARING = [s for s in SCENARIOS if s.clear is not None]


def test_every_built_in_rule_has_a_scenario():
    assert {s.code for s in SCENARIOS} == set(DETECTORS)
    assert all(s.subject_type == DETECTORS[s.code].subject_type for s in SCENARIOS)


@pytest.fixture
def partners() -> dict[str, Partner]:
    kinds = {
        "ACME": Partner.Kind.CUSTOMER,
        "GLOBEX": Partner.Kind.CUSTOMER,
        "UPSN": Partner.Kind.CARRIER,
        "DHLX": Partner.Kind.CARRIER,
        "DCLYON": Partner.Kind.WAREHOUSE,
        "ERP": Partner.Kind.ERP,
    }
    return {code: Partner.objects.create(code=code, name=code.title(), kind=kind) for code, kind in kinds.items()}


@pytest.fixture
def rules(partners) -> dict[str, ExceptionRule]:
    builtin_rules_ensure()
    ExceptionRule.objects.filter(threshold=timedelta(0)).update(threshold=TEST_THRESHOLD)
    return {rule.code: rule for rule in ExceptionRule.objects.all()}


def cases_of(code: str, **filters: Any) -> list[ExceptionCase]:
    return list(ExceptionCase.objects.filter(rule__code=code, **filters).order_by("id"))


# --- open past the threshold, never twice, close when cleared ---------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_a_case_opens_once_the_condition_outlasts_the_threshold_and_not_before(rules, scenario):
    rule = rules[scenario.code]
    early = scenario.build("EARLY", scenario.threshold - 2 * H)
    late = scenario.build("LATE", scenario.threshold + 2 * H)

    if scenario.order_scoped:
        detect(order_ids=early.order_ids)
        assert cases_of(scenario.code) == []
    report = detect()

    [case] = cases_of(scenario.code)
    assert (case.subject_type, case.subject_id) == (scenario.subject_type, late.subject_id)
    assert case.pk in report.opened
    assert (case.status, case.queue, case.severity) == ("open", rule.queue, rule.severity)
    assert case.due_at == case.opened_at + rule.sla
    assert case.summary
    assert list(case.history.values_list("action", flat=True)) == [CaseEvent.Action.OPENED]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.order_scoped], ids=str)
def test_event_driven_detection_opens_the_case_of_the_touched_orders(rules, scenario):
    late = scenario.build("LATE", scenario.threshold + 2 * H)
    other = scenario.build("OTHER", scenario.threshold + 2 * H)

    detect(order_ids=late.order_ids)
    assert [c.subject_id for c in cases_of(scenario.code)] == [late.subject_id]

    detect(order_ids=other.order_ids)
    assert [c.subject_id for c in cases_of(scenario.code)] == [late.subject_id, other.subject_id]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_detecting_again_never_opens_a_second_case(rules, scenario):
    late = scenario.build("LATE", scenario.threshold + 2 * H)
    first = detect()
    order_ids = set(Order.objects.values_list("id", flat=True))

    again = [detect(), detect(order_ids=order_ids), detect(order_ids=late.order_ids), detect()]

    [case] = cases_of(scenario.code)
    assert case.pk in first.opened
    assert all(case.pk not in report.opened and case.pk not in report.closed for report in again)
    assert case.history.count() == 1


@pytest.mark.parametrize("scenario", CLEARING, ids=str)
def test_a_case_closes_itself_when_a_later_event_clears_the_condition(rules, scenario):
    scenario.build("LATE", scenario.threshold + 2 * H)
    detect()
    [case] = cases_of(scenario.code)

    result = scenario.clear("LATE")
    # An apply reacts over the orders it touched; what no order carries waits for the sweep.
    report = detect(order_ids=result.order_ids) if scenario.order_scoped else detect()

    case.refresh_from_db()
    assert case.pk in report.closed
    assert (case.status, case.resolution) == (ExceptionCase.Status.RESOLVED, "auto")
    assert case.resolved_at is not None
    assert list(case.history.values_list("action", flat=True)) == ["opened", "auto_closed"]
    detect()
    assert cases_of(scenario.code, status__in=OPEN) == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_a_disabled_rule_opens_nothing(rules, scenario):
    ExceptionRule.objects.filter(code=scenario.code).update(enabled=False)
    built = scenario.build("LATE", scenario.threshold + 2 * H)

    detect()
    detect(order_ids=built.order_ids)

    assert cases_of(scenario.code) == []


# --- rules that never clear by themselves -----------------------------------------------------


def test_damage_stays_open_until_a_person_closes_it_and_then_stays_closed(rules, django_user_model):
    built = _damaged_or_refused("LATE", TEST_THRESHOLD + 2 * H)
    detect()
    apply(carrier_event("LATE", "shipment.delivered", NOW))
    detect(order_ids=built.order_ids)
    detect()
    [case] = cases_of("damaged_or_refused")
    assert case.status == ExceptionCase.Status.OPEN

    user = django_user_model.objects.create_user("claims")
    closed = cases_close(
        cases=ExceptionCase.objects.filter(pk=case.pk), actor=user, dismiss=False, reason_code="carrier_claim"
    )
    assert closed == 1
    detect()
    detect(order_ids=built.order_ids)

    [case] = cases_of("damaged_or_refused")
    assert (case.status, case.resolution) == (ExceptionCase.Status.RESOLVED, "carrier_claim")
    assert list(case.history.values_list("action", flat=True)) == ["opened", "resolved"]


def test_a_refusal_after_the_damage_was_handled_opens_a_new_case(rules, django_user_model):
    _damaged_or_refused("LATE", TEST_THRESHOLD + 10 * H)
    detect()
    user = django_user_model.objects.create_user("claims")
    cases_close(cases=ExceptionCase.objects.all(), actor=user, dismiss=False, reason_code="carrier_claim")

    apply(carrier_event("LATE", "shipment.refused", TEST_THRESHOLD + H))
    detect()

    first, second = cases_of("damaged_or_refused")
    assert (first.status, second.status) == ("resolved", "open")


def detect_after(sweep: bool, result: ApplyResult | Built) -> None:
    """Detection as it runs after an apply (over the orders it touched), or the periodic sweep."""
    if sweep:
        detect()
    else:
        detect(order_ids=result.order_ids)


@pytest.mark.parametrize("sweep", [False, True], ids=["after an apply", "sweep"])
def test_a_hold_coming_back_after_its_hand_closed_case_cleared_opens_a_new_case(rules, django_user_model, sweep):
    """Detection notes that a hand-closed case's condition cleared, so the next hold is news; another
    order's hand-closed case, whose hold lasts, stays closed."""
    built = _invoice_held("H", TEST_THRESHOLD + 10 * H)
    other = _invoice_held("K", TEST_THRESHOLD + 10 * H)
    detect()
    user = django_user_model.objects.create_user("finance")
    cases_close(cases=ExceptionCase.objects.all(), actor=user, dismiss=True, reason_code="not_an_issue")
    detect_after(sweep, built)
    assert ExceptionCase.objects.count() == 2, "not reopened while the hold lasts"

    detect_after(sweep, apply(ev("H-inv-rel", "invoice.released", TEST_THRESHOLD + 5 * H, ("invoice", "INV-H"))))
    detect_after(sweep, apply(invoice("H", "invoice.held", TEST_THRESHOLD + 2 * H, attributes={"reason": "price"})))
    detect()

    first, second = cases_of("invoice_held", subject_id=built.subject_id)
    assert (first.status, second.status) == ("dismissed", "open")
    assert [case.status for case in cases_of("invoice_held", subject_id=other.subject_id)] == ["dismissed"]


@pytest.mark.parametrize("sweep", [False, True], ids=["after an apply", "sweep"])
def test_a_hold_coming_back_after_its_case_closed_itself_opens_a_new_case(rules, sweep):
    built = _invoice_held("H", TEST_THRESHOLD + 10 * H)
    detect()
    detect_after(sweep, apply(ev("H-inv-rel", "invoice.released", TEST_THRESHOLD + 5 * H, ("invoice", "INV-H"))))
    detect_after(sweep, apply(invoice("H", "invoice.held", TEST_THRESHOLD + 2 * H, attributes={"reason": "price"})))

    first, second = cases_of("invoice_held", subject_id=built.subject_id)
    assert ((first.status, first.resolution), second.status) == (("resolved", "auto"), "open")


def test_a_refused_shipment_opens_a_case_too(rules):
    apply(created("R", 30 * H), manifested("R", 20 * H), carrier_event("R", "shipment.refused", 10 * H))
    detect()
    [case] = cases_of("damaged_or_refused")
    assert case.subject_id == shipment_id("R")


# --- details of single rules ------------------------------------------------------------------


def test_a_disputed_charge_opens_a_case_without_a_quote(rules):
    _freight_unsettled("D", 10 * H)
    apply(freight("D", "freight.charge_disputed", 8 * H))
    detect()
    [case] = cases_of("freight_disputed_or_over_quote")
    assert case.amount_at_risk == Decimal(120)
    assert "disputed" in case.summary


def test_a_charge_within_the_tolerance_of_its_quote_opens_nothing(rules):
    apply(created("T", 30 * H), manifested("T", 20 * H), freight_posted("T", 10 * H, amount="104.00", quoted="100.00"))
    detect()
    assert cases_of("freight_disputed_or_over_quote") == []

    ExceptionRule.objects.filter(code="freight_disputed_or_over_quote").update(tolerance=Decimal("0.02"))
    detect()
    [case] = cases_of("freight_disputed_or_over_quote")
    assert case.amount_at_risk == Decimal(4)


def test_an_older_late_estimate_does_not_make_a_fresh_one_at_risk_past_its_threshold(rules):
    """The clock of at_risk starts when the current estimate was given."""
    built = _at_risk("A", TEST_THRESHOLD + 5 * H)
    newer = (timezone.now() + 80 * H).isoformat()
    apply(carrier_event("A", "shipment.eta_updated", H, estimated_delivery_at=newer))
    detect(order_ids=built.order_ids)
    assert cases_of("at_risk") == []


def test_tracking_stale_counts_from_the_latest_news_whichever_kind(rules):
    """Tracking assigned after the last carrier scan restarts the clock."""
    apply(
        created("Q", 100 * H),
        manifested("Q", 90 * H, tracking=False),
        ev("Q-pick", "shipment.picked_up", 80 * H, ("shipment", "SH-Q")),
        ev("Q-trk", "shipment.tracking_assigned", 10 * H, ("shipment", "SH-Q"), ("tracking", "1Z-Q")),
    )
    detect()
    assert cases_of("tracking_stale") == []


def test_a_cancelled_order_closes_its_order_cases(rules):
    built = _released_not_picked("C", 30 * H)
    detect()
    result = apply(ev("C-cancel", "order.cancelled", H, ("order", "C")))
    detect(order_ids=result.order_ids)
    [case] = cases_of("released_not_picked")
    assert (case.status, case.resolution) == ("resolved", "auto")
    assert built.order_ids == result.order_ids


@pytest.mark.parametrize("kind", ["invoice.held", "invoice.posted"])
def test_any_invoice_clears_delivered_not_invoiced(rules, kind):
    """An ERP may send the invoice held at once, or only once posted: the order is invoiced."""
    built = _delivered_not_invoiced("O", 30 * H)
    detect()
    result = apply(invoice("O", kind, H, amount="50.00", currency="EUR"))
    detect(order_ids=result.order_ids)
    [case] = cases_of("delivered_not_invoiced")
    assert (case.status, case.resolution) == ("resolved", "auto")
    assert result.order_ids == built.order_ids


def test_packing_counts_as_picking(rules):
    """A warehouse that reports packed without picked: released-not-picked clears, and
    picked-not-shipped counts from the packing."""
    built = _released_not_picked("W", 30 * H)
    detect()
    result = apply(ev("W-pack", "order.packed", 20 * H, ("order", "W")))
    detect(order_ids=result.order_ids)
    [released] = cases_of("released_not_picked")
    [picked] = cases_of("picked_not_shipped")
    assert (released.status, picked.status) == ("resolved", "open")
    assert picked.subject_id == built.subject_id


def test_a_parked_event_stays_parked_too_long_across_the_periodic_retry(rules):
    _parked("LOST", 30 * H)
    retry_parked_events()
    detect()
    assert len(cases_of("parked_too_long")) == 1


def test_an_event_waiting_for_its_shipment_keeps_its_parking_time_across_the_periodic_retry(rules):
    """It names a known order, so the periodic retry takes it out and parks it again: with the
    time it was first parked, or it would never be parked too long."""
    apply(created("W", 40 * H))
    with time_machine.travel(timezone.now() - 30 * H):
        apply(ev("W-scan", "shipment.in_transit", timedelta(0), ("tracking", "1ZW"), ("order", "W")))
    first_parked = ParkedEvent.objects.get(event_id="W-scan").parked_at

    retry_parked_events()
    detect()

    assert ParkedEvent.objects.get(event_id="W-scan").parked_at == first_parked
    assert len(cases_of("parked_too_long")) == 1


# --- scope ------------------------------------------------------------------------------------


def test_a_rule_scoped_to_a_customer_opens_cases_for_that_customer_only(rules, partners):
    ExceptionRule.objects.filter(code="released_not_picked").update(scope_customer=partners["GLOBEX"])
    apply(created("A", 40 * H, customer="ACME"), ev("A-rel", "order.released", 30 * H, ("order", "A")))
    apply(created("G", 40 * H, customer="GLOBEX"), ev("G-rel", "order.released", 30 * H, ("order", "G")))

    detect()

    [case] = cases_of("released_not_picked")
    assert (case.subject_id, case.customer) == (order_id("G"), partners["GLOBEX"])


def test_a_rule_scoped_to_a_carrier_opens_cases_for_that_carrier_only(rules, partners):
    ExceptionRule.objects.filter(code__in=["tracking_stale", "freight_unsettled"]).update(
        scope_partner=partners["DHLX"]
    )
    for key, carrier in (("U", "UPSN"), ("D", "DHLX")):
        apply(
            created(key, 50 * 24 * H),
            manifested(key, 40 * 24 * H, carrier=carrier),
            freight_posted(key, 35 * 24 * H),
        )

    detect()

    [stale] = cases_of("tracking_stale")
    assert (stale.subject_id, stale.partner) == (shipment_id("D"), partners["DHLX"])
    [unsettled] = cases_of("freight_unsettled")
    assert unsettled.shipment_id == shipment_id("D")


def test_a_rule_scoped_to_a_region_opens_cases_for_that_region_only(rules):
    ExceptionRule.objects.filter(code__in=["late_against_promise", "delivery_attempt_failed"]).update(
        scope_region="US-East"
    )
    _late_against_promise("EU", 10 * H)
    apply(created("US", 70 * H, region="US-East", promised_in=-10 * H), manifested("US", 50 * H))
    for key in ("EU", "US"):
        apply(carrier_event(key, "shipment.delivery_attempted", 8 * H))

    detect()

    [late] = cases_of("late_against_promise")
    assert (late.subject_id, late.region) == (order_id("US"), "US-East")
    [attempt] = cases_of("delivery_attempt_failed")
    assert (attempt.subject_id, attempt.region) == (shipment_id("US"), "US-East")


# --- what a case says -------------------------------------------------------------------------


def test_cases_carry_the_money_at_stake_the_queue_and_the_due_date(rules, partners):
    _delivered_not_invoiced("O", 30 * H)
    _invoice_held("I", 10 * H)
    _freight_unsettled("F", 31 * 24 * H)
    _freight_over_quote("Q", 10 * H)

    detect()

    expected = {
        "delivered_not_invoiced": (Decimal(50), "EUR", "finance"),
        "invoice_held": (Decimal(50), "EUR", "finance"),
        "freight_unsettled": (Decimal(120), "USD", "finance"),
        "freight_disputed_or_over_quote": (Decimal(20), "USD", "finance"),
    }
    for code, (amount, currency, queue) in expected.items():
        [case] = cases_of(code)
        assert (case.amount_at_risk, case.currency, case.queue) == (amount, currency, queue), code
        assert case.due_at == case.opened_at + rules[code].sla
        assert case.customer == partners["ACME"]
        assert case.region == "EU-West"
        assert case.order is not None
    [held] = cases_of("invoice_held")
    assert "quantity variance" in held.summary
    [over] = cases_of("freight_disputed_or_over_quote")
    assert over.partner == partners["UPSN"]
    assert over.shipment_id == shipment_id("Q")


def test_a_shipment_case_values_every_order_it_carries_however_detection_ran(rules, partners):
    """A consolidated shipment of two orders (50 + 30 EUR) is 80 EUR at stake, filed under the
    first; at risk, each order has its own case, at its own value, naming the shipment."""
    result = apply(
        created("A", 40 * H, promised_in=48 * H),
        created("B", 40 * H, promised_in=48 * H, price="6.00"),
        manifested("AB", 30 * H, "A", "B"),
        carrier_event(
            "AB", "shipment.eta_updated", 20 * H, estimated_delivery_at=(timezone.now() + 96 * H).isoformat()
        ),
        carrier_event("AB", "shipment.delivery_attempted", 10 * H),
    )
    detect(order_ids={order_id("B")})
    detect()

    [case] = cases_of("delivery_attempt_failed")
    assert (case.amount_at_risk, case.currency) == (Decimal(80), "EUR")
    assert (case.order_id, case.shipment_id) == (order_id("A"), shipment_id("AB"))
    assert (case.customer, case.partner, case.queue) == (partners["ACME"], partners["UPSN"], "customer_service")
    risks = sorted(cases_of("at_risk"), key=lambda case: case.order_id)
    assert [(case.order_id, case.shipment_id, case.amount_at_risk) for case in risks] == [
        (order_id("A"), shipment_id("AB"), Decimal(50)),
        (order_id("B"), shipment_id("AB"), Decimal(30)),
    ]
    assert {(case.customer, case.partner, case.queue) for case in risks} == {
        (partners["ACME"], partners["UPSN"], "customer_service")
    }
    assert result.order_ids == {order_id("A"), order_id("B")}


# --- event-driven detection stays within the touched orders -----------------------------------


def test_event_driven_detection_closes_only_the_cases_of_the_touched_orders(rules):
    _released_not_picked("A", 30 * H)
    _released_not_picked("B", 30 * H)
    _manifested_without_tracking("C", 10 * H)
    detect()
    assert len(cases_of("released_not_picked", status="open")) == 2

    picked_a = apply(ev("A-pick", "order.picked", H, ("order", "A")))
    apply(ev("B-pick", "order.picked", H, ("order", "B")))
    apply(ev("C-trk", "shipment.tracking_assigned", H, ("shipment", "SH-C"), ("tracking", "1Z-C")))
    report = detect(order_ids=picked_a.order_ids)

    [a] = cases_of("released_not_picked", subject_id=order_id("A"))
    [b] = cases_of("released_not_picked", subject_id=order_id("B"))
    [c] = cases_of("manifested_without_tracking")
    assert report.closed == [a.pk]
    assert (a.status, b.status, c.status) == ("resolved", "open", "open")

    assert set(detect().closed) == {b.pk, c.pk}


# --- cost -------------------------------------------------------------------------------------


def _many(n: int, prefix: str) -> set[int]:
    """``2n`` orders that trip most rules at once, plus ``n`` parked events and ``n`` dead letters."""
    old = 40 * 24 * H
    late_eta = (timezone.now() + 96 * H).isoformat()
    items = []
    for i in range(n):
        key, fresh = f"{prefix}M{i}", f"{prefix}N{i}"
        items += [
            created(key, old + 9 * H, promised_in=48 * H),
            manifested(key, old + 8 * H),
            carrier_event(key, "shipment.eta_updated", old + 7 * H, estimated_delivery_at=late_eta),
            carrier_event(key, "shipment.delivery_attempted", old + 6 * H),
            carrier_event(key, "shipment.damaged", old + 5 * H),
            freight_posted(key, old + 4 * H, quoted="100.00"),
            invoice(key, "invoice.generated", old + 3 * H, amount="50.00", currency="EUR"),
            invoice(key, "invoice.held", old + 2 * H),
            created(fresh, old, promised_in=-old),
            ev(f"{fresh}-rel", "order.released", old, ("order", fresh)),
        ]
    with time_machine.travel(timezone.now() - old):
        parked = [ev(f"{prefix}P{i}-pick", "order.picked", timedelta(0), ("order", f"{prefix}P{i}")) for i in range(n)]
        result = apply(*items, *parked)
    for i in range(n):
        _dead_letter(f"{prefix}X{i}", old)
    return result.order_ids


def _shape(queries: list[str]) -> list[str]:
    """The statements, with inserts counted once: the database adapter splits a bulk insert into
    batches of a fixed number of rows (SQLite's 999 parameters), a cost per rows, not per subject."""
    shape = [sql.split()[0] for sql in queries]
    return [verb for i, verb in enumerate(shape) if verb != "INSERT" or shape[i - 1 : i] != ["INSERT"]]


@pytest.mark.parametrize("phase", ["open", "again", "event-driven", "close"])
def test_detection_costs_the_same_queries_for_5_or_50_orders(rules, phase):
    shapes = []
    for n in (5, 50):
        ExceptionCase.objects.all().delete()
        ExceptionRule.objects.update(scope_region="")
        order_ids = _many(n, prefix=f"S{n}-")
        if phase != "open":
            detect()
        if phase == "close":
            ExceptionRule.objects.update(scope_region="nowhere")  # every order and shipment leaves scope
        run = (lambda ids=order_ids: detect(order_ids=ids)) if phase == "event-driven" else detect
        with CaptureQueriesContext(connection) as captured:
            report = run()
        shapes.append(_shape([query["sql"] for query in captured.captured_queries]))
        if phase == "open":
            assert len(report.opened) >= 11 * n
        elif phase == "close":
            assert len(report.closed) >= 9 * n
        else:
            assert report.opened == report.closed == []
    small, big = shapes
    assert big == small
