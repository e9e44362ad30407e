"""Tasks have time limits; a message whose processing runs out of time becomes a dead letter.

A worker's soft limit raises SoftTimeLimitExceeded in the task's thread, wherever it happens to
be; here a timer signal does the same to a task run in-process, while a parser or the apply hangs.
"""

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings

from apps.ingest import services
from apps.ingest.models import InboundMessage
from apps.ingest.parsers import canonical_json
from apps.ingest.tasks import process_message_task
from controltower.celery import app as celery_app
from tests.factories import PartnerFactory

EVENT = {
    "event_id": "slow-1",
    "kind": "order.created",
    "occurred_at": "2026-11-20T10:00:00+00:00",
    "references": [{"kind": "order", "value": "SO-SLOW"}],
}


@contextmanager
def soft_limit_after(seconds: float) -> Iterator[None]:
    """Raise SoftTimeLimitExceeded in this thread after ``seconds``, as a worker's soft limit does."""

    def expire(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def hang(*args: object, **kwargs: object) -> None:
    time.sleep(30)
    raise AssertionError("the soft limit should have stopped this")


@pytest.fixture
def message(db) -> InboundMessage:
    partner = PartnerFactory(code="ERPSLOW", kind="erp")
    received, _ = services.message_receive(
        body=json.dumps(EVENT).encode(), source="api", partner=partner, format="json", enqueue=False
    )
    return received


@pytest.mark.parametrize("stage", ["parse", "apply"])
def test_processing_that_hits_the_soft_limit_becomes_a_dead_letter(message, monkeypatch, settings, stage):
    settings.INGEST_SOFT_TIME_LIMIT = 7
    if stage == "parse":
        monkeypatch.setattr(canonical_json, "parse", hang)
    else:
        monkeypatch.setattr(services, "apply_timeline_events", hang)

    started = time.monotonic()
    with soft_limit_after(0.3):
        result = process_message_task.apply(args=[message.pk])

    assert time.monotonic() - started < 10
    assert result.successful(), result.traceback
    message.refresh_from_db()
    assert message.status == InboundMessage.Status.DEAD
    assert message.error.startswith("processing exceeded 7 seconds and was stopped")
    assert message.events_count == 0


def test_a_timed_out_message_is_not_processed_again_by_itself(message, monkeypatch):
    monkeypatch.setattr(canonical_json, "parse", hang)
    with soft_limit_after(0.3):
        process_message_task.apply(args=[message.pk])
    monkeypatch.undo()

    assert process_message_task.apply(args=[message.pk]).result is None
    message.refresh_from_db()
    assert message.status == InboundMessage.Status.DEAD


def test_every_task_has_a_soft_and_a_hard_limit():
    assert celery_app.conf.task_soft_time_limit == django_settings.CELERY_TASK_SOFT_TIME_LIMIT > 0
    assert celery_app.conf.task_time_limit == django_settings.CELERY_TASK_TIME_LIMIT
    assert django_settings.CELERY_TASK_TIME_LIMIT > django_settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert process_message_task.soft_time_limit == django_settings.INGEST_SOFT_TIME_LIMIT
    assert process_message_task.time_limit == django_settings.INGEST_TIME_LIMIT > process_message_task.soft_time_limit
