import os

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from controltower.collector import tune_for_batches

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controltower.settings")

app = Celery("controltower")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Critical: ship confirmations, deliveries, invoice-relevant events. Bulk: status refreshes.
# Outbound: sending to subscribers, so a slow receiver never holds up ingestion.
app.conf.task_queues = (Queue("critical"), Queue("default"), Queue("bulk"), Queue("outbound"))
app.autodiscover_tasks()


@worker_process_init.connect
def _tune_collector(**_: object) -> None:
    tune_for_batches()
