from celery import shared_task
from django.db import OperationalError

from apps.exceptions.notifications import critical_cases_notify, digest_send
from apps.exceptions.services import detect


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def detect_for_orders_task(order_ids: list[int]) -> dict[str, int]:
    """React to an apply: evaluate the rules over the orders it touched."""
    report = detect(order_ids=order_ids)
    return {"opened": len(report.opened), "closed": len(report.closed)}


@shared_task
def detect_exceptions_task() -> dict[str, int]:
    """Periodic sweep: time-based rules (nothing happened for too long) need no event to fire."""
    report = detect()
    return {"opened": len(report.opened), "closed": len(report.closed)}


@shared_task
def daily_digest_task() -> int:
    return digest_send()


@shared_task
def critical_cases_notify_task(case_ids: list[int]) -> int:
    return critical_cases_notify(case_ids)
