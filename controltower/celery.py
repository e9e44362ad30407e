import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controltower.settings")

app = Celery("controltower")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Critical: ship confirmations, deliveries, invoice-relevant events. Bulk: status refreshes.
app.conf.task_queues = (Queue("critical"), Queue("default"), Queue("bulk"))
app.autodiscover_tasks()
