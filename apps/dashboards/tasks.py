from celery import shared_task

from apps.dashboards.services import kpis_refresh_pending


@shared_task(acks_late=True, ignore_result=True)
def kpis_drain_task() -> None:
    kpis_refresh_pending()
