"""A real Celery worker process, a real Redis broker and a real PostgreSQL database."""

import subprocess
import time

import pytest
from django.db import transaction

from apps.timeline.models import Order, Shipment
from apps.timeline.services import enqueue_events
from controltower.celery import app as celery_app
from tests.stories import events, manifested, order_created
from tests.support import needs_services, start_worker

pytestmark = [pytest.mark.worker, needs_services]


@pytest.fixture
def worker(transactional_db):
    celery_app.control.purge()
    process = start_worker(capture=True)
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
