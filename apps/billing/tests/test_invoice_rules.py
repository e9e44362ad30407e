from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from apps.billing.models import Invoice, InvoiceRule
from apps.billing.services import evaluate_invoice_rules, invoice_release, invoice_trigger
from apps.partners.models import Partner
from apps.timeline.models import Milestone, Order
from apps.timeline.services import apply_events
from tests.stories import carrier, event, events, manifested, order_created, ref

pytestmark = pytest.mark.django_db

LINES = [{"sku": "A", "quantity": "10", "unit_price": "2.50"}, {"sku": "B", "quantity": "4", "unit_price": "5"}]


def _rule(**fields) -> InvoiceRule:
    customer = Partner.objects.get_or_create(code="ACME", defaults={"name": "Acme", "kind": "customer"})[0]
    return InvoiceRule.objects.create(customer=customer, **fields)


def _apply(*items) -> None:
    """Apply, then react as the post-commit task does."""
    result = apply_events(events(*items))
    evaluate_invoice_rules(order_ids=result.order_ids)


def _order() -> dict:
    return order_created("SO-1", order={"customer": "ACME"}, lines=LINES, currency="EUR")


def _split_shipments() -> list[dict]:
    return [
        manifested("SH-1", "1Z1", "SO-1", hours=10, lines=[{"sku": "A", "quantity": "10"}]),
        manifested("SH-2", "1Z2", "SO-1", hours=11, lines=[{"sku": "B", "quantity": "4"}]),
    ]


def _generated() -> list[str]:
    return sorted(Milestone.objects.filter(kind="invoice.generated").values_list("event_id", flat=True))


def test_proof_of_delivery_invoices_the_complete_order_once_when_the_last_shipment_is_delivered():
    _rule(trigger="proof_of_delivery", granularity="when_complete")
    _apply(_order(), *_split_shipments(), carrier("1Z1", "shipment.delivered", 30))
    assert _generated() == []

    _apply(carrier("1Z2", "shipment.delivered", 40))
    _apply(carrier("1Z2", "shipment.delivered", 41))

    assert _generated() == ["invoice-rule:generated:INV-SO-1"]
    invoice = Invoice.objects.get()
    assert (invoice.amount, invoice.currency, invoice.status) == (Decimal("45"), "EUR", "generated")
    assert (
        invoice.generated_at
        == Order.objects.get().delivered_at
        == Milestone.objects.get(event_id="1Z2-shipment.delivered-40").occurred_at
    )
    assert Order.objects.get().stage == "invoiced"


def test_per_shipment_invoices_each_delivered_shipment():
    _rule(trigger="proof_of_delivery", granularity="per_shipment")
    _apply(_order(), *_split_shipments(), carrier("1Z1", "shipment.delivered", 30))
    assert dict(Invoice.objects.values_list("number", "amount")) == {"INV-SO-1-SH-1": Decimal("25")}
    _apply(carrier("1Z2", "shipment.delivered", 40))
    assert Invoice.objects.count() == 2


def test_ship_confirmation_invoices_at_manifest():
    _rule(trigger="ship_confirmation", granularity="per_shipment")
    _apply(_order(), _split_shipments()[0])
    assert Invoice.objects.get().number == "INV-SO-1-SH-1"


def test_pod_with_freight_waits_for_the_freight_charge_to_be_validated():
    _rule(trigger="pod_and_freight_validated", granularity="per_shipment")
    freight = [ref("pro", "P1"), ref("invoice", "FB-1")]
    _apply(
        _order(),
        _split_shipments()[0],
        event("pro", "shipment.picked_up", 12, ref("tracking", "1Z1"), ref("pro", "P1")),
        carrier("1Z1", "shipment.delivered", 30),
        event("fb", "freight.charge_posted", 31, *freight, amount="80"),
    )
    assert not Invoice.objects.exists()
    _apply(event("fb-ok", "freight.charge_validated", 35, *freight))
    assert Invoice.objects.get().number == "INV-SO-1-SH-1"


def test_damage_holds_the_invoice_with_its_reason():
    _rule(trigger="proof_of_delivery", granularity="per_shipment")
    _apply(
        _order(),
        _split_shipments()[0],
        carrier("1Z1", "shipment.damaged", 20),
        carrier("1Z1", "shipment.delivered", 30),
    )
    invoice = Invoice.objects.get()
    assert invoice.status == "held"
    assert "SH-1 damaged" in invoice.hold_reason


def test_shipping_more_than_ordered_beyond_tolerance_holds_the_invoice():
    _rule(trigger="ship_confirmation", granularity="per_shipment", quantity_tolerance=Decimal("0.1"))
    _apply(_order(), manifested("SH-1", "1Z1", "SO-1", lines=[{"sku": "A", "quantity": "12"}]))
    assert Invoice.objects.get().hold_reason == "A: shipped 12, ordered 10"


def test_within_tolerance_a_short_shipment_completes_the_order():
    _rule(trigger="proof_of_delivery", granularity="when_complete", quantity_tolerance=Decimal("0.2"))
    short = [{"sku": "A", "quantity": "9"}, {"sku": "B", "quantity": "4"}]
    _apply(_order(), manifested("SH-1", "1Z1", "SO-1", lines=short), carrier("1Z1", "shipment.delivered", 30))
    assert Invoice.objects.get().amount == Decimal("42.5")


def test_a_sku_split_over_two_shipments_completes_the_order_once_both_are_delivered():
    _rule(trigger="proof_of_delivery", granularity="when_complete")
    first = manifested("SH-1", "1Z1", "SO-1", hours=10, lines=[{"sku": "A", "quantity": "6"}])
    rest = [{"sku": "A", "quantity": "4"}, {"sku": "B", "quantity": "4"}]
    _apply(_order(), first, manifested("SH-2", "1Z2", "SO-1", hours=11, lines=rest))
    _apply(carrier("1Z1", "shipment.delivered", 30), carrier("1Z2", "shipment.delivered", 40))

    invoice = Invoice.objects.get()
    assert (invoice.number, invoice.amount, invoice.status) == ("INV-SO-1", Decimal("45"), "generated")


def test_a_line_not_shipped_at_all_keeps_the_order_waiting_however_small():
    _rule(trigger="proof_of_delivery", granularity="when_complete")
    lines = [{"sku": "A", "quantity": "10", "unit_price": "2.50"}, {"sku": "B", "quantity": "1", "unit_price": "5"}]
    _apply(
        order_created("SO-1", order={"customer": "ACME"}, lines=lines, currency="EUR"),
        manifested("SH-1", "1Z1", "SO-1", lines=[{"sku": "A", "quantity": "10"}]),
        carrier("1Z1", "shipment.delivered", 30),
    )
    assert not Invoice.objects.exists()

    _apply(manifested("SH-2", "1Z2", "SO-1", hours=31, lines=[{"sku": "B", "quantity": "1"}]))
    _apply(carrier("1Z2", "shipment.delivered", 40))
    assert Invoice.objects.get().amount == Decimal("30")


def test_shipping_more_than_ordered_within_tolerance_is_not_held():
    _rule(trigger="ship_confirmation", granularity="per_shipment", quantity_tolerance=Decimal("0.1"))
    _apply(_order(), manifested("SH-1", "1Z1", "SO-1", lines=[{"sku": "A", "quantity": "11"}]))
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.hold_reason, invoice.amount) == ("generated", "", Decimal("27.5"))


def test_shipping_a_sku_the_order_does_not_have_holds_the_invoice():
    _rule(trigger="ship_confirmation", granularity="per_shipment", quantity_tolerance=Decimal("0.1"))
    shipped = [{"sku": "A", "quantity": "10"}, {"sku": "C", "quantity": "1"}]
    _apply(_order(), manifested("SH-1", "1Z1", "SO-1", lines=shipped))
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.hold_reason) == ("held", "C: shipped 1, ordered 0")


def test_an_order_invoiced_by_the_erp_is_left_alone():
    _rule(trigger="proof_of_delivery", granularity="when_complete")
    erp_invoice = event("erp-inv", "invoice.generated", 25, ref("invoice", "9000123"), ref("order", "SO-1"))
    _apply(_order(), *_split_shipments(), erp_invoice)
    _apply(carrier("1Z1", "shipment.delivered", 30), carrier("1Z2", "shipment.delivered", 40))
    assert list(Invoice.objects.values_list("number", flat=True)) == ["9000123"]


def test_customers_without_a_rule_are_not_invoiced():
    Partner.objects.create(code="ACME", name="Acme", kind="customer")
    _apply(
        _order(),
        *_split_shipments(),
        carrier("1Z1", "shipment.delivered", 30),
        carrier("1Z2", "shipment.delivered", 40),
    )
    assert not Invoice.objects.exists()


def test_finance_triggers_by_hand_at_most_once_and_releases_a_hold(django_user_model):
    _rule(trigger="proof_of_delivery", granularity="when_complete")
    _apply(_order())
    user = django_user_model.objects.create_user("finance")
    order = Order.objects.get()
    invoice_trigger(order=order, actor=user)
    invoice_trigger(order=order, actor=user)
    assert _generated() == ["invoice-rule:generated:INV-SO-1"]
    generated = Invoice.objects.get()
    assert (generated.number, generated.amount, generated.currency) == ("INV-SO-1", Decimal("45"), "EUR")
    milestone = Milestone.objects.get(kind="invoice.generated")
    assert milestone.payload["attributes"]["triggered_by"] == "finance", "the timeline says who invoiced by hand"

    hold = event("hold", "invoice.held", 0, ref("invoice", "INV-SO-1"), attributes={"reason": "price"})
    apply_events(events(hold | {"occurred_at": timezone.now().isoformat()}))
    invoice = Invoice.objects.get()
    assert invoice.status == "held"
    invoice_release(invoice=invoice, actor=user, note="Price confirmed")
    invoice.refresh_from_db()
    assert invoice.status == "released"


@given(data=st.data())
def test_an_invoice_is_generated_exactly_once_whatever_the_order_and_duplication_of_deliveries(data):
    from django.db import transaction

    history = [
        _order(),
        *_split_shipments(),
        carrier("1Z1", "shipment.in_transit", 20),
        carrier("1Z1", "shipment.delivered", 30),
        carrier("1Z2", "shipment.delivered", 40),
        carrier("1Z2", "shipment.pod_received", 44),
    ]
    stream = data.draw(st.permutations(history)) + data.draw(st.lists(st.sampled_from(history), max_size=6))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=5)))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    savepoint = transaction.savepoint()
    try:
        _rule(trigger="proof_of_delivery", granularity="when_complete")
        for batch in batches:
            _apply(*batch)
        assert _generated() == ["invoice-rule:generated:INV-SO-1"]
        invoice = Invoice.objects.get()
        assert invoice.amount == Decimal("45")
        # Invoiced when the rule was first known to be met: at delivery, or at the proof of
        # delivery when that came in before the carrier's delivered scan.
        assert invoice.generated_at.isoformat() in ("2026-11-04T00:00:00+00:00", "2026-11-04T04:00:00+00:00")
    finally:
        transaction.savepoint_rollback(savepoint)
