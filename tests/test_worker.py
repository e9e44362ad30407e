"""A real Celery worker process, a real Redis broker and a real PostgreSQL database."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from apps.timeline.models import Order, Shipment
from apps.timeline.services import enqueue_events
from controltower.celery import app as celery_app
from tests.stories import events, manifested, order_created

ROOT = Path(__file__).resolve().parent.parent
needs_services = pytest.mark.skipif(
    not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="needs REDIS_URL and a PostgreSQL DATABASE_URL (set by .ci/run)",
)
pytestmark = [pytest.mark.worker, needs_services]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(transactional_db):
    celery_app.control.purge()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    command = [sys.executable, "-m", "celery", "-A", "controltower", "worker", "--pool=solo", "--loglevel=INFO"]
    command += ["--queues=critical,default,bulk", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def queued(monkeypatch):
    """Send tasks to the broker instead of running them in-process."""
    monkeypatch.setattr(celery_app.conf, "task_always_eager", False)


def _wait_for(condition, worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.poll() is not None:
            pytest.fail(f"worker exited: {worker.stdout.read()[-3000:]}")
        time.sleep(0.3)
    worker.terminate()
    pytest.fail(f"nothing applied within {timeout}s; worker said: {worker.communicate(timeout=20)[0][-3000:]}")


def test_a_worker_applies_events_enqueued_on_commit(worker, queued):
    with transaction.atomic():
        enqueue_events(events(order_created("SO-W1"), manifested("SH-W1", "1ZW1", "SO-W1")))
        # Nothing is sent before the transaction commits.
        assert not Order.objects.filter(number="SO-W1").exists()

    _wait_for(lambda: Shipment.objects.filter(number="SH-W1", orders__number="SO-W1").exists(), worker)
    assert Order.objects.get(number="SO-W1").stage == "shipped"
