from django.conf import settings
from django.core.management.base import BaseCommand

from controltower.celery import app


class Command(BaseCommand):
    help = "Run every periodic job once, now, in this process (the jobs Celery beat schedules)."

    def handle(self, *args, **options) -> None:
        app.loader.import_default_modules()
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            outcome = app.tasks[entry["task"]]()
            self.stdout.write(f"{name}: {outcome}")
