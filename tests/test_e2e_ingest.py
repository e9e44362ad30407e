"""End to end: messages through the real receivers into real Celery workers on Redis and PostgreSQL.

A worker is killed with SIGKILL half way and another started; afterwards every message has been
processed exactly once in effect, and the timeline equals a clean single-pass apply of the same
events.
"""

import signal
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import transaction
from rest_framework.test import APIClient

from apps.ingest.models import InboundMessage
from apps.ingest.services import message_preview, messages_requeue_stuck
from apps.ingest.simulator import Simulation, generate, send_in_process, simulation_setup
from apps.inventory.models import Allocation, InventoryPosition, LedgerEntry, StockFeed
from apps.timeline.events import EventSource
from apps.timeline.models import (
    Milestone,
    MilestoneReport,
    Order,
    ParkedEvent,
    Reference,
    Shipment,
)
from apps.timeline.services import apply_events
from controltower.celery import app as celery_app
from tests.snapshot import snapshot
from tests.support import needs_services, start_worker

pytestmark = [pytest.mark.worker, needs_services]
ORDERS = 390  # about 2,000 messages


@pytest.fixture
def simulation(transactional_db) -> Simulation:
    cache.clear()  # webhook signatures remembered by an earlier run would be refused as replays
    return simulation_setup()


def _received() -> int:
    return InboundMessage.objects.filter(status=InboundMessage.Status.RECEIVED).count()


def _wait_until(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(message)


def _clean_single_pass_state() -> dict:
    """The state a single apply of every stored message's events gives, computed and rolled back."""
    events = []
    stored = InboundMessage.objects.exclude(status=InboundMessage.Status.DEAD).select_related("partner", "channel")
    for message in stored.order_by("pk"):
        preview = message_preview(body=bytes(message.body), format=message.format, partner=message.partner)
        source = EventSource(partner=message.partner.code, channel=message.channel.code, message=message.pk)
        events += [event.model_copy(update={"source": source}) for event in preview.document.events]
    with transaction.atomic():
        stock = (InventoryPosition, LedgerEntry, StockFeed, Allocation)
        for model in (MilestoneReport, Milestone, ParkedEvent, Reference, Shipment, Order, *stock):
            model.objects.all().delete()
        apply_events(events)
        expected = snapshot()
        transaction.set_rollback(True)
    return expected, {event.event_id for event in events}


def test_a_worker_killed_mid_stream_loses_nothing_and_doubles_nothing(simulation, monkeypatch, settings, tmp_path):
    settings.INBOX_DIR = tmp_path
    monkeypatch.setattr(celery_app.conf, "task_always_eager", False)
    celery_app.control.purge()
    messages = generate(seed=7, orders=ORDERS)
    assert len(messages) >= 2000
    assert {m.format for m in messages} >= {"json", "x12", "edifact", "csv", "easypost"}
    worker = start_worker()
    try:
        tally = send_in_process(messages, APIClient(), simulation)
        stored = InboundMessage.objects.count()
        assert stored == tally.stored
        _wait_until(lambda: _received() < stored * 0.8, 240, "the first worker made no progress")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert 0 < _received() < stored, "the kill must land mid-stream"

        worker = start_worker()
        _wait_until(_settled, 600, "the second worker did not drain the queue")
        # A task the killed worker held is not redelivered before the broker's visibility timeout;
        # the periodic sweeper re-enqueues whatever is still waiting.
        messages_requeue_stuck(older_than=timedelta(0))
        _wait_until(lambda: _received() == 0, 120, "stuck messages were not processed after the sweep")
    finally:
        worker.kill()
        worker.wait(timeout=30)

    dead = InboundMessage.objects.filter(status=InboundMessage.Status.DEAD)
    malformed = {m.body for m in messages if m.fault in ("truncated_x12", "broken_json")}
    assert {bytes(m.body) for m in dead} <= malformed
    assert all(m.error for m in dead)
    assert not InboundMessage.objects.filter(attempts__gt=1).exists(), "a message was processed twice"
    expected, event_ids = _clean_single_pass_state()
    recorded = Milestone.objects.count() + MilestoneReport.objects.count() + ParkedEvent.objects.count()
    assert recorded == len(event_ids), "an event was lost or recorded twice"
    assert snapshot() == expected


def _settled() -> bool:
    """The received count has stopped moving: what is left (if anything) is stuck."""
    first = _received()
    time.sleep(3)
    return _received() == first
