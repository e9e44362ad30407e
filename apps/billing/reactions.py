"""Billing's reactions to an apply (registered in ``settings.TIMELINE_REACTIONS``)."""

from apps.billing.projections import recompute_billing
from apps.billing.services import evaluate_invoice_rules
from apps.timeline.reactions import Phase, Touched, reaction

BATCH = 500


@reaction(phase=Phase.IN_TRANSACTION, stage="billing_projections")
def project_billing(touched: Touched) -> None:
    """Invoices, freight charges and returns follow their milestones in the same transaction."""
    recompute_billing(order_ids=touched.order_ids, shipment_ids=touched.shipment_ids)


@reaction(phase=Phase.AFTER_COMMIT, stage="invoice_rules")
def invoice_touched_orders(touched: Touched) -> None:
    """Invoice the touched orders whose rule is now met (the invoice is itself an apply)."""
    ids = sorted(touched.order_ids)
    for start in range(0, len(ids), BATCH):
        evaluate_invoice_rules(order_ids=ids[start : start + BATCH])
