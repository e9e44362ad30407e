from celery import shared_task
from django.db import OperationalError

from apps.billing.services import evaluate_invoice_rules, orders_awaiting_invoice

BATCH = 500


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def evaluate_invoice_rules_task(order_ids: list[int]) -> int:
    """React to an apply: invoice the touched orders whose rule is now met."""
    result = evaluate_invoice_rules(order_ids=order_ids)
    return len(result.applied) if result else 0


@shared_task
def invoice_sweep_task() -> int:
    """Periodic: a rule added or changed in admin applies to orders already waiting."""
    ids = orders_awaiting_invoice()
    applied = 0
    for start in range(0, len(ids), BATCH):
        result = evaluate_invoice_rules(order_ids=ids[start : start + BATCH])
        applied += len(result.applied) if result else 0
    return applied
