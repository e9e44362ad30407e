"""Small messages are processed together: one apply and one round of reactions for many webhooks."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.ingest.tasks import process_message_task
from apps.timeline.models import Milestone, Order

from .conftest import as_body, order_created

pytestmark = pytest.mark.django_db(transaction=True)


def _receive(partner, body: bytes, **fields) -> InboundMessage:
    message, _ = message_receive(body=body, source="api", partner=partner, format="json", enqueue=False, **fields)
    return message


def _orders(partner, count: int, start: int = 0) -> list[InboundMessage]:
    return [_receive(partner, as_body(order_created(f"SO-{n}"))) for n in range(start, start + count)]


def test_a_small_message_takes_the_waiting_ones_along_and_each_gets_its_own_figures(erp):
    first, *others = _orders(erp, 5)
    resend = _receive(erp, as_body({**order_created("SO-0"), "attributes": {"note": "again"}}))  # same event id

    message_process(first.pk, companions=10)

    statuses = dict(InboundMessage.objects.values_list("pk", "status"))
    assert set(statuses.values()) == {"processed"}
    assert Order.objects.count() == 5
    for message in [first, *others]:
        message.refresh_from_db()
        assert (message.events_count, message.applied_count, message.duplicate_count) == (1, 1, 0)
    resend.refresh_from_db()
    assert (resend.applied_count, resend.duplicate_count) == (0, 1)
    # Their own tasks come later and find them done.
    assert all(message_process(m.pk) is None for m in others)


def test_a_message_that_cannot_be_read_is_a_dead_letter_alone(erp):
    good = _orders(erp, 2)
    bad = _receive(erp, b'{"events": [{"kind": "order.created"}]}')
    message_process(good[0].pk, companions=10)

    bad.refresh_from_db()
    assert bad.status == "dead"
    assert "event_id" in bad.error
    assert InboundMessage.objects.filter(status="processed").count() == 2
    assert Order.objects.count() == 2


def test_companions_come_from_the_same_queue_only(erp):
    critical = _receive(erp, as_body(order_created("SO-1")), priority="critical")
    scans = _orders(erp, 3, start=10)
    InboundMessage.objects.filter(pk__in=[m.pk for m in scans]).update(queue="bulk")

    message_process(critical.pk, companions=10)

    assert list(InboundMessage.objects.filter(status="processed").values_list("pk", flat=True)) == [critical.pk]
    assert InboundMessage.objects.filter(status="received").count() == 3


def test_a_large_message_is_processed_alone(erp, settings, monkeypatch):
    monkeypatch.setattr("apps.ingest.services.MICRO_BATCH_MAX_BYTES", 10)
    first, second = _orders(erp, 2)
    message_process(first.pk, companions=10)
    second.refresh_from_db()
    assert second.status == "received"


def test_fifty_webhooks_cost_about_the_queries_of_five(erp):
    five = _orders(erp, 5)
    with CaptureQueriesContext(connection) as small:
        message_process(five[0].pk, companions=100)
    fifty = _orders(erp, 50, start=100)
    with CaptureQueriesContext(connection) as large:
        message_process(fifty[0].pk, companions=100)
    assert Milestone.objects.count() == 55
    # Each message still has its own row to update; nothing else grows with their number.
    assert len(large) <= len(small) + 50 + 10, [q["sql"][:80] for q in large.captured_queries]


def test_the_worker_task_micro_batches(erp):
    messages = _orders(erp, 3)
    process_message_task.apply(args=[messages[0].pk])
    assert InboundMessage.objects.filter(status="processed").count() == 3


def test_an_event_repeated_in_one_message_counts_once_as_applied(erp):
    first = _receive(erp, as_body(order_created("SO-1"), order_created("SO-1")))
    second = _receive(erp, as_body(order_created("SO-2")))
    message_process(first.pk, companions=10)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.events_count, first.applied_count, first.duplicate_count) == (2, 1, 1)
    assert (second.applied_count, second.duplicate_count) == (1, 0)


def test_a_stuck_message_is_requeued_on_the_queue_chosen_when_it_arrived(erp, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from apps.ingest.services import messages_requeue_stuck

    delivery = _receive(erp, as_body(order_created("SO-1")), priority="critical")
    InboundMessage.objects.filter(pk=delivery.pk).update(received_at=timezone.now() - timedelta(hours=1))
    queued = []
    monkeypatch.setattr(process_message_task, "apply_async", lambda **kw: queued.append((kw["args"], kw["queue"])))

    assert messages_requeue_stuck() == 1
    assert queued == [([delivery.pk], "critical")]


def test_one_task_takes_every_message_it_names_even_when_the_first_was_taken(erp, monkeypatch):
    from apps.ingest import services

    messages = _orders(erp, 4)
    monkeypatch.setattr(services, "MICRO_BATCH_MESSAGES", 1)  # no companions: only what the task names
    message_process(messages[0].pk, companions=0)  # another worker took the first meanwhile

    process_message_task.apply(args=[messages[0].pk, [m.pk for m in messages[1:]]])

    assert set(InboundMessage.objects.values_list("status", flat=True)) == {"processed"}
    assert Order.objects.count() == 4


def test_messages_are_queued_one_task_per_queue_and_batch(erp, monkeypatch, settings):
    from apps.ingest import services

    monkeypatch.setattr(services, "MICRO_BATCH_MESSAGES", 3)
    critical = [_receive(erp, as_body(order_created(f"SO-C{n}")), priority="critical") for n in range(4)]
    default = _orders(erp, 2)
    queued = []
    monkeypatch.setattr(process_message_task, "apply_async", lambda **kw: queued.append((kw["args"], kw["queue"])))

    services.enqueue_processing([*critical, *default])

    ids = [m.pk for m in critical]
    assert queued == [
        ([ids[0], ids[1:3]], "critical"),
        ([ids[3]], "critical"),
        ([default[0].pk, [default[1].pk]], "default"),
    ]


def test_a_web_process_queues_what_it_stores_together_a_moment_later(erp, monkeypatch, settings):
    import time

    from apps.ingest import services

    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.ENQUEUE_BATCH_SECONDS = 0.5
    handed: list[list[int]] = []
    monkeypatch.setattr(services, "enqueue_processing", lambda messages: handed.append([m.pk for m in messages]))

    stored = [
        message_receive(body=as_body(order_created(f"SO-W{n}")), source="webhook", partner=erp, format="json")[0]
        for n in range(5)
    ]
    assert handed == [], "the sender's answer does not wait on the broker"
    deadline = time.monotonic() + 5
    while not handed and time.monotonic() < deadline:
        time.sleep(0.02)

    assert handed == [[m.pk for m in stored]]
