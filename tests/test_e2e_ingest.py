"""End to end: messages through the real receivers into real Celery workers on Redis and PostgreSQL.

A worker is killed with SIGKILL half way and another started; afterwards every message has been
processed exactly once in effect, and the timeline equals a clean single-pass apply of the same
events.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction
from rest_framework.test import APIClient

from apps.ingest.models import InboundMessage
from apps.ingest.services import message_preview, messages_requeue_stuck
from apps.partners.models import Channel, Partner
from apps.partners.services import api_token_create
from apps.timeline.events import EventSource
from apps.timeline.models import Milestone, MilestoneReport, Order, ParkedEvent, Reference, Shipment
from apps.timeline.services import apply_events
from controltower.celery import app as celery_app
from tests.snapshot import snapshot

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(
        not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="needs REDIS_URL and a PostgreSQL DATABASE_URL (set by .ci/run)",
    ),
]
MESSAGES = 2000
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def _start_worker() -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": _database_url(), "CELERY_TASK_ALWAYS_EAGER": "false"}
    command = [sys.executable, "-m", "celery", "-A", "controltower", "worker", "--pool=solo", "--loglevel=WARNING"]
    command += ["--queues=critical,default,bulk", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _event(event_id: str, kind: str, hours: float, *refs: tuple[str, str], **fields) -> dict:
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
        "references": [{"kind": k, "value": v} for k, v in refs],
        **fields,
    }


def _stories(rng: random.Random) -> list[tuple[str, dict]]:
    """(sender, body) pairs: ERP orders and invoices, warehouse ship notices, carrier scans."""
    messages = []
    for n in range(MESSAGES // 5):
        so, sh, tracking = f"SO-{n}", f"SH-{n}", f"1Z{n:08d}"
        order = {"customer": "ACME", "promised_at": (T0 + timedelta(days=4)).isoformat()}
        messages += [
            ("ERP", _event(f"c-{n}", "order.created", 0, ("order", so), ("po", f"PO-{n}"), order=order)),
            (
                "DC",
                _event(f"m-{n}", "shipment.manifested", 5, ("shipment", sh), ("tracking", tracking), ("po", f"PO-{n}")),
            ),
            ("UPSN", _event(f"t-{n}", "shipment.in_transit", 9 + rng.random(), ("tracking", tracking))),
            ("UPSN", _event(f"d-{n}", "shipment.delivered", 30 + rng.random(), ("tracking", tracking))),
            ("ERP", _event(f"i-{n}", "invoice.generated", 40, ("invoice", f"INV-{n}"), ("order", so), amount="12.50")),
        ]
    # Faults: a late older scan, references that never match, and every tenth message sent twice.
    messages += [("UPSN", _event(f"late-{n}", "shipment.in_transit", 2, ("tracking", f"1Z{n:08d}"))) for n in range(40)]
    messages += [("UPSN", _event(f"lost-{n}", "shipment.in_transit", 3, ("tracking", f"9X{n:06d}"))) for n in range(20)]
    messages += messages[::10]
    rng.shuffle(messages)
    return messages


@pytest.fixture
def senders(transactional_db) -> dict[str, APIClient]:
    kinds = {"ERP": Partner.Kind.ERP, "DC": Partner.Kind.WAREHOUSE, "UPSN": Partner.Kind.CARRIER}
    Partner.objects.create(code="ACME", name="Acme", kind=Partner.Kind.CUSTOMER)
    clients = {}
    for code, kind in kinds.items():
        partner = Partner.objects.create(code=code, name=code, kind=kind)
        Channel.objects.create(partner=partner, code="api", format=Channel.Format.JSON)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(partner=partner, name='e2e')[1]}")
        clients[code] = client
    return clients


def _post_all(senders: dict[str, APIClient], messages: list[tuple[str, dict]]) -> None:
    for code, event in messages:
        response = senders[code].post("/api/v1/events/", json.dumps(event), content_type="application/json")
        assert response.status_code in (200, 202), response.content


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
    for message in InboundMessage.objects.select_related("partner", "channel").order_by("pk"):
        preview = message_preview(body=bytes(message.body), format=message.format, partner=message.partner)
        source = EventSource(partner=message.partner.code, channel=message.channel.code, message=message.pk)
        events += [event.model_copy(update={"source": source}) for event in preview.document.events]
    with transaction.atomic():
        for model in (MilestoneReport, Milestone, ParkedEvent, Reference, Shipment, Order):
            model.objects.all().delete()
        apply_events(events)
        expected = snapshot()
        transaction.set_rollback(True)
    return expected


def test_a_worker_killed_mid_stream_loses_nothing_and_doubles_nothing(senders, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "task_always_eager", False)
    celery_app.control.purge()
    messages = _stories(random.Random(11))
    worker = _start_worker()
    try:
        _post_all(senders, messages)
        stored = InboundMessage.objects.count()
        assert stored == len({json.dumps(event, sort_keys=True) for _, event in messages})
        _wait_until(lambda: _received() < stored * 0.8, 240, "the first worker made no progress")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        assert 0 < _received() < stored, "the kill must land mid-stream"

        worker = _start_worker()
        _wait_until(lambda: _settled(), 400, "the second worker did not drain the queue")
        # A task the killed worker held is not redelivered before the broker's visibility timeout;
        # the periodic sweeper re-enqueues whatever is still waiting.
        messages_requeue_stuck(older_than=timedelta(0))
        _wait_until(lambda: _received() == 0, 120, "stuck messages were not processed after the sweep")
    finally:
        worker.kill()
        worker.wait(timeout=30)

    unprocessed = InboundMessage.objects.exclude(status=InboundMessage.Status.PROCESSED)
    assert not unprocessed.exists(), list(unprocessed.values_list("status", "error")[:5])
    assert InboundMessage.objects.filter(attempts__gt=1).count() == 0, "a message was applied twice"
    applied = Milestone.objects.count() + MilestoneReport.objects.count() + ParkedEvent.objects.count()
    assert applied == len({event["event_id"] for _, event in messages})
    assert Order.objects.filter(stage="invoiced").count() == MESSAGES // 5
    assert ParkedEvent.objects.count() == 20
    assert snapshot() == _clean_single_pass_state()


def _settled() -> bool:
    """The received count has stopped moving: what is left (if anything) is stuck."""
    first = _received()
    time.sleep(3)
    return _received() == first
