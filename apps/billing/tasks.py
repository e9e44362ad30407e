from celery import shared_task

from apps.billing.services import evaluate_invoice_rules, orders_awaiting_invoice

BATCH = 500


@shared_task
def invoice_sweep_task() -> int:
    """Periodic: a rule added or changed in admin applies to orders already waiting."""
    ids = orders_awaiting_invoice()
    applied = 0
    for start in range(0, len(ids), BATCH):
        result = evaluate_invoice_rules(order_ids=ids[start : start + BATCH])
        applied += len(result.applied) if result else 0
    return applied
