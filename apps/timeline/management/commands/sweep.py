from django.conf import settings
from django.core.management.base import BaseCommand

from controltower.celery import app


class Command(BaseCommand):
    help = "Run every periodic job once, now, in this process (the jobs Celery beat schedules)."

    def handle(self, *args, **options) -> None:
        # Registers every app's tasks. (The loader's import_default_modules would do it too, but
        # sets Django up again on the way, which rebinds the root log handler to today's stderr.)
        app.autodiscover_tasks(force=True)
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            outcome = app.tasks[entry["task"]]()
            self.stdout.write(f"{name}: {outcome}")
