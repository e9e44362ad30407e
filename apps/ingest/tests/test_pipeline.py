from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from apps.dashboards.models import Fact
from apps.ingest import services
from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.ingest.tasks import process_message_task
from apps.timeline.events import parse_events
from apps.timeline.models import Order
from apps.timeline.services import apply_events

from .conftest import as_body, order_created

# Real commits: receivers queue processing on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def _receive(partner, body: bytes, **fields) -> InboundMessage:
    message, _ = message_receive(body=body, source="api", partner=partner, format="json", enqueue=False, **fields)
    return message


def test_processing_twice_is_harmless(erp):
    message = _receive(erp, as_body(order_created()))
    assert message_process(message.pk).applied == 1
    assert message_process(message.pk) is None
    message.refresh_from_db()
    assert (message.status, message.attempts, message.applied_count) == ("processed", 1, 1)


def test_a_message_whose_format_cannot_be_told_is_a_dead_letter_with_a_reason(erp):
    erp.channels.create(code="files", format="csv")  # two channels: the bytes must tell
    message, _ = message_receive(body=b"hello, world", source="api", partner=erp, enqueue=False)
    message_process(message.pk)
    message.refresh_from_db()
    assert message.status == "dead"
    assert "could not tell the format" in message.error


def test_a_message_stored_with_a_format_we_do_not_read_is_a_dead_letter_naming_the_formats(erp):
    message = _receive(erp, as_body(order_created()))
    InboundMessage.objects.filter(pk=message.pk).update(format="magento")  # stored by an older version

    message_process(message.pk)

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("dead", 1)
    assert "unknown format 'magento'" in message.error
    assert "x12" in message.error


def test_a_dead_letter_replays_after_the_cause_is_fixed(erp):
    message, _ = message_receive(body=as_body(order_created()), source="api", partner=erp, format="csv", enqueue=False)
    message_process(message.pk)
    message.refresh_from_db()
    assert message.status == "dead"

    InboundMessage.objects.filter(pk=message.pk).update(format="json")  # the channel's format corrected
    call_command("replay", str(message.pk))

    message.refresh_from_db()
    assert message.status == "processed"
    assert Order.objects.filter(number="SO-1").exists()


def test_transient_errors_retry_then_leave_a_failed_dead_letter(erp, monkeypatch):
    message = _receive(erp, as_body(order_created()))
    calls = []

    def flaky(message_id, **options):
        calls.append(message_id)
        raise OperationalError("database is restarting")

    monkeypatch.setattr(services, "message_process", flaky)
    process_message_task.apply_async(args=[message.pk])  # in-process: retries run at once

    assert len(calls) == process_message_task.max_retries + 1
    message.refresh_from_db()
    assert message.status == "failed"
    assert "database is restarting" in message.error


def test_the_sweeper_requeues_messages_stuck_in_received(erp, monkeypatch):
    message = _receive(erp, as_body(order_created()))
    InboundMessage.objects.filter(pk=message.pk).update(received_at=timezone.now() - timedelta(hours=1))
    _receive(erp, as_body(order_created("SO-2")))  # young: left to its own task

    queued = []
    monkeypatch.setattr(services, "enqueue_processing", lambda found: queued.extend(m.pk for m in found))
    assert services.messages_requeue_stuck() == 1
    assert queued == [message.pk]  # young messages are left to their own task
    monkeypatch.undo()

    call_command("sweep")

    message.refresh_from_db()
    assert message.status == "processed"


def test_inbox_folders_are_polled_and_files_archived(erp, tmp_path, settings):
    settings.INBOX_DIR = tmp_path
    folder = tmp_path / "ERP" / "events"
    folder.mkdir(parents=True)
    (folder / "orders-1.json").write_bytes(as_body(order_created("SO-77")))

    assert services.inbox_poll() == 1

    assert not (folder / "orders-1.json").exists()
    assert list((folder / "archive").rglob("orders-1.json"))
    message = InboundMessage.objects.get()
    assert (message.source, message.filename, message.status) == ("file", "orders-1.json", "processed")
    assert Order.objects.filter(number="SO-77").exists()


def test_dead_letters_replay_through_the_api_for_people_allowed_to(erp, client, django_user_model):
    from django.contrib.auth.models import Permission

    message, _ = message_receive(body=as_body(order_created()), source="api", partner=erp, format="csv", enqueue=False)
    message_process(message.pk)
    InboundMessage.objects.filter(pk=message.pk).update(format="json")
    url = "/api/v1/messages/replay/"

    client.force_login(django_user_model.objects.create_user("agent"))
    assert client.post(url, {"ids": [message.pk]}, content_type="application/json").status_code == 403

    admin = django_user_model.objects.create_user("integration")
    admin.user_permissions.add(Permission.objects.get(codename="replay_inboundmessage"))
    client.force_login(admin)
    assert client.post(url, {}, content_type="application/json").status_code == 400
    response = client.post(url, {"all": True, "partner": "ERP"}, content_type="application/json")

    assert response.json() == {"replayed": 1}
    message.refresh_from_db()
    assert message.status == "processed"


RELEASE_FEED = {"csv": {"feed": "order_release", "columns": {"occurred_at": "Released"}}}


def test_a_csv_feed_streams_through_the_pipeline_and_bad_rows_become_warnings(erp):
    body = b"Order,PO,Released\nSO-1,PO-1,2026-11-20 08:00\nSO-2,PO-2,not a time\n"
    message_process(_receive(erp, as_body(order_created("SO-1"))).pk)
    erp.channels.update(format="csv", mapping_overrides=RELEASE_FEED)
    message, _ = message_receive(body=body, source="file", partner=erp, format="csv", enqueue=False)

    outcome = message_process(message.pk)

    message.refresh_from_db()
    assert (message.status, message.events_count, outcome.applied) == ("processed", 1, 1)
    assert any("line 3" in warning for warning in message.warnings)
    assert Order.objects.get(number="SO-1").released_at is not None


def test_a_csv_feed_with_no_readable_row_is_a_dead_letter(erp):
    erp.channels.update(format="csv", mapping_overrides=RELEASE_FEED)
    message, _ = message_receive(
        body=b"Order,PO,Released\nSO-2,PO-2,not a time\n", source="file", partner=erp, format="csv", enqueue=False
    )
    message_process(message.pk)
    message.refresh_from_db()
    assert message.status == "dead"
    assert message.error.startswith("nothing could be read: line 2")


def test_a_processed_message_feeds_the_kpis_and_counts_resends(erp, carrier):
    def scan(event_id: str, kind: str, hour: str, **fields) -> dict:
        references = [{"kind": "tracking", "value": "1Z1"}]
        return {
            "event_id": event_id,
            "kind": kind,
            "occurred_at": f"2026-11-20T{hour}:00+00:00",
            "references": references,
            **fields,
        }

    message_process(_receive(erp, as_body(order_created(occurred_at="2026-11-20T07:00:00+00:00"))).pk)
    manifest = {
        **scan("asn-1", "shipment.manifested", "07:30"),
        "references": [{"kind": "shipment", "value": "SH-1"}, {"kind": "tracking", "value": "1Z1"}],
        "attributes": {"carrier": "UPSN"},
    }
    apply_events(parse_events([manifest]))
    body = as_body(
        scan("pickup-1", "shipment.picked_up", "08:00"),
        scan("transit-1", "shipment.in_transit", "09:30"),
        scan("scan-1", "shipment.status_unmapped", "09:00", attributes={"status_code": "X9"}),
    )
    message = _receive(carrier, body)
    again = _receive(carrier, body)
    message_process(message.pk)  # real commits: the KPI refresh runs once processing commits

    message.refresh_from_db()
    assert again.pk == message.pk
    assert message.resent_count == 1
    assert message.unmapped_count == 1
    assert message.source_time.isoformat() == "2026-11-20T09:30:00+00:00"
    facts = dict(Fact.objects.filter(subject_type="message", subject_id=message.pk).values_list("metric", "hits"))
    assert facts["failed_messages"] == 0
    assert facts["unmapped_statuses"] == 1
    assert {"apply_lag", "source_lag", "duplicate_events"} <= set(facts)


def test_one_bad_event_in_a_file_is_refused_alone_and_the_rest_applied(erp):
    bad = {**order_created("SO-3"), "kind": "order.teleported"}
    message = _receive(erp, as_body(order_created("SO-1"), bad, order_created("SO-2")))
    message_process(message.pk)

    message.refresh_from_db()
    assert message.status == InboundMessage.Status.PARTIALLY_PROCESSED
    assert (message.events_count, message.applied_count) == (2, 2)
    assert any(warning.startswith("events[1].kind:") for warning in message.warnings)
    assert set(Order.objects.values_list("number", flat=True)) == {"SO-1", "SO-2"}


def test_a_collision_with_another_worker_is_retried_and_converges(erp, monkeypatch):
    """Two workers crossing on the same milestone can raise IntegrityError; the retry applies."""
    from django.db import IntegrityError

    message = _receive(erp, as_body(order_created()))
    real, calls = services.message_process, []

    def collide_once(message_id, **options):
        calls.append(message_id)
        if len(calls) == 1:
            raise IntegrityError("update or delete on table violates foreign key constraint")
        return real(message_id, **options)

    monkeypatch.setattr(services, "message_process", collide_once)
    process_message_task.apply_async(args=[message.pk])  # in-process: the retry runs at once

    assert len(calls) == 2
    message.refresh_from_db()
    assert message.status == "processed"
    assert Order.objects.filter(number="SO-1").exists()
