from celery import shared_task

from apps.dashboards.services import kpis_refresh


@shared_task(acks_late=True, ignore_result=True)
def kpis_refresh_task(order_ids: list[int], message_ids: list[int], case_ids: list[int]) -> None:
    kpis_refresh(order_ids=order_ids, message_ids=message_ids, case_ids=case_ids)
