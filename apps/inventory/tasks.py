from celery import shared_task
from django.utils import timezone

from apps.inventory.services import stock_accuracy_record


@shared_task
def stock_accuracy_task() -> int:
    """Periodic: today's inventory accuracy and snapshot freshness per warehouse, for the dashboard."""
    return stock_accuracy_record(now=timezone.now())
