from celery import shared_task

from apps.exceptions.notifications import critical_cases_notify, digest_send
from apps.exceptions.services import detect


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
