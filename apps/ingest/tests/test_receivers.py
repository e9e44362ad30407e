import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from rest_framework.test import APIClient

from apps.ingest.models import InboundMessage
from apps.partners.services import api_token_create, api_token_revoke
from apps.timeline.models import Milestone, Order

from .conftest import as_body, order_created

# Real commits: receivers queue processing on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)
EVENTS = reverse("api-events")
MESSAGES = reverse("api-messages")


def test_canonical_events_are_stored_processed_and_attributed_to_the_token_partner(erp_api, erp):
    response = erp_api.post(EVENTS, as_body(order_created("SO-1")), content_type="application/json")

    assert response.status_code == 202, response.content
    message = InboundMessage.objects.get(pk=response.json()["id"])
    assert message.partner == erp
    assert message.status == InboundMessage.Status.PROCESSED
    assert response.json()["status_url"].endswith(reverse("api-message", args=[message.pk]))
    milestone = Milestone.objects.get()
    assert (milestone.source_partner, milestone.source_message_id) == (erp, message.pk)
    assert Order.objects.filter(number="SO-1").exists()


def test_the_same_payload_again_returns_the_original_message(erp_api):
    first = erp_api.post(EVENTS, as_body(order_created()), content_type="application/json")
    again = erp_api.post(EVENTS, as_body(order_created()), content_type="application/json")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["duplicate"] is True
    assert InboundMessage.objects.count() == 1


def test_the_same_idempotency_key_returns_the_original_even_with_another_body(erp_api):
    first = erp_api.post(
        EVENTS, as_body(order_created("SO-1")), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    again = erp_api.post(
        EVENTS, as_body(order_created("SO-2")), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert again.json()["id"] == first.json()["id"]
    assert not Order.objects.filter(number="SO-2").exists()


def test_invalid_events_get_a_400_naming_each_field_and_nothing_is_stored(erp_api):
    bad = order_created() | {"occurred_at": "2026-11-20T14:03:00", "kind": "order.teleported"}
    response = erp_api.post(EVENTS, as_body(bad), content_type="application/json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert any(error.startswith("events[0].kind:") for error in errors)
    assert any(error.startswith("events[0].occurred_at:") and "timezone" in error for error in errors)
    assert not InboundMessage.objects.exists()


def test_malformed_json_gets_a_400(erp_api):
    response = erp_api.post(EVENTS, b'{"events": [', content_type="application/json")
    assert response.status_code == 400
    assert "Not valid JSON" in response.json()["body"][0]


def test_without_a_token_the_answer_is_401_and_a_revoked_token_is_refused(erp):
    anonymous = APIClient().post(EVENTS, as_body(order_created()), content_type="application/json")
    assert anonymous.status_code == 401
    token, raw = api_token_create(partner=erp, name="old")
    api_token_revoke(token=token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.post(EVENTS, as_body(order_created()), content_type="application/json").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw[:-2]}xx")
    assert client.post(EVENTS, as_body(order_created()), content_type="application/json").status_code == 401


def test_a_partner_token_cannot_write_as_another_partner(erp_api, carrier):
    response = erp_api.post(f"{EVENTS}?partner=UPSN", as_body(order_created()), content_type="application/json")
    assert response.status_code == 403
    assert "cannot write as UPSN" in response.json()["detail"]
    assert not InboundMessage.objects.exists()


def test_a_partner_token_cannot_read_orders_or_other_partners_messages(erp_api, carrier):
    assert erp_api.get(reverse("api-orders"), {"ref": "SO-1"}).status_code == 403
    _, raw = api_token_create(partner=carrier, name="t")
    carrier_api = APIClient()
    carrier_api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    scan = {
        **order_created("SO-9"),
        "kind": "shipment.in_transit",
        "references": [{"kind": "tracking", "value": "1Z9"}],
    }
    scan.pop("order", None)
    mine = carrier_api.post(EVENTS, as_body(scan), content_type="application/json").json()["id"]
    assert erp_api.get(reverse("api-message", args=[mine])).status_code == 404
    assert carrier_api.get(reverse("api-message", args=[mine])).json()["status"] == "processed"


def test_raw_documents_are_accepted_with_a_format(erp_api):
    response = erp_api.post(f"{MESSAGES}?format=json", as_body(order_created("SO-5")), content_type="text/plain")
    assert response.status_code == 202
    assert InboundMessage.objects.get().format == "json"
    assert Order.objects.filter(number="SO-5").exists()


def test_a_file_upload_is_accepted(erp_api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("orders.json", as_body(order_created("SO-6")), content_type="application/json")
    response = erp_api.post(MESSAGES, {"file": upload, "format": "json"}, format="multipart")
    assert response.status_code == 202
    assert InboundMessage.objects.get().filename == "orders.json"


def test_an_unknown_format_name_is_a_400(erp_api):
    response = erp_api.post(f"{MESSAGES}?format=pigeon", b"coo", content_type="text/plain")
    assert response.status_code == 400
    assert "Unknown format 'pigeon'" in response.json()["format"][0]


def test_an_empty_body_is_a_400(erp_api):
    response = erp_api.post(f"{MESSAGES}?format=json", b"", content_type="text/plain")
    assert response.status_code == 400
    assert "empty" in response.json()["body"][0]


def test_an_oversized_message_is_a_413_and_nothing_is_stored(erp_api, settings):
    settings.INGEST_MAX_MESSAGE_BYTES = 100
    response = erp_api.post(MESSAGES, b"x" * 500, content_type="application/edi-x12")
    assert response.status_code == 413
    assert response.json()["limit"] == 100
    assert not InboundMessage.objects.exists()


def test_an_unreadable_document_is_kept_as_a_dead_letter_with_its_reason(erp_api):
    response = erp_api.post(f"{MESSAGES}?format=json", b"this is not json", content_type="text/plain")
    assert response.status_code == 202
    message = InboundMessage.objects.get()
    assert message.status == InboundMessage.Status.DEAD
    assert message.error
    assert bytes(message.body) == b"this is not json"


def test_staff_may_send_for_a_named_partner_and_other_people_may_not(client, django_user_model, erp):
    staff = django_user_model.objects.create_user("admin", is_staff=True)
    client.force_login(staff)
    not_yet = client.post(f"{EVENTS}?partner=ERP", as_body(order_created()), content_type="application/json")
    assert not_yet.status_code == 403, "being staff is not enough: sending as a partner is a permission of its own"
    staff.user_permissions.add(Permission.objects.get(codename="post_inboundmessage"))
    client.force_login(staff)
    ok = client.post(f"{EVENTS}?partner=ERP", as_body(order_created()), content_type="application/json")
    assert ok.status_code == 202
    missing = client.post(EVENTS, as_body(order_created("SO-2")), content_type="application/json")
    assert missing.status_code == 400
    client.force_login(django_user_model.objects.create_user("agent"))
    denied = client.post(f"{EVENTS}?partner=ERP", as_body(order_created("SO-3")), content_type="application/json")
    assert denied.status_code == 403


def test_the_message_status_reports_counts_and_warnings(erp_api, erp):
    body = as_body(order_created("SO-1"), {**order_created("SO-2"), "event_id": "p", "kind": "order.released"})
    message_id = erp_api.post(EVENTS, body, content_type="application/json").json()["id"]
    status = erp_api.get(reverse("api-message", args=[message_id])).json()
    assert (status["events_count"], status["applied_count"], status["parked_count"]) == (2, 1, 1)
    assert status["partner"] == "ERP"


def test_the_schema_documents_the_receivers(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("reader"))
    schema = client.get(reverse("api-schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json").content.decode()
    for path in ("/api/v1/messages/", "/api/v1/events/", "/api/v1/messages/{id}/"):
        assert json.dumps(path)[1:-1] in schema


@pytest.mark.parametrize(
    ("kinds", "queue"),
    [
        (["shipment.in_transit", "shipment.eta_updated"], "bulk"),
        (["shipment.in_transit", "shipment.delivered"], "critical"),
        (["order.released"], "default"),
    ],
)
def test_canonical_events_are_queued_by_what_they_hold(erp_api, carrier, monkeypatch, kinds, queue):
    """A delivery overtakes a flood of scans: the receiver already parsed the events, so the
    message goes to the queue its most urgent event needs."""
    from apps.ingest import tasks

    queued = []
    monkeypatch.setattr(tasks.process_message_task, "apply_async", lambda **kw: queued.append(kw["queue"]))
    body = [
        {
            "event_id": f"e-{n}",
            "kind": kind,
            "occurred_at": "2026-11-20T10:00:00+00:00",
            "references": [{"kind": "tracking", "value": "1Z1"}],
        }
        for n, kind in enumerate(kinds)
    ]
    sender = erp_api
    if kinds[0].startswith("shipment."):
        sender = APIClient()
        sender.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(partner=carrier, name='t')[1]}")
    response = sender.post(EVENTS, json.dumps({"events": body}), content_type="application/json")
    assert response.status_code == 202, response.content
    assert queued == [queue]


@pytest.mark.parametrize("code", ["ERP\x00", "ERP 1", "-ERP"])
def test_a_partner_code_no_partner_could_have_is_an_unknown_partner(client, django_user_model, erp, code):
    sender = django_user_model.objects.create_user("admin", is_staff=True)
    sender.user_permissions.add(Permission.objects.get(codename="post_inboundmessage"))
    client.force_login(sender)

    response = client.post(
        EVENTS, as_body(order_created()), content_type="application/json", QUERY_STRING=f"partner={code}"
    )

    assert response.status_code == 400
    assert "Unknown partner" in response.content.decode()
    assert not InboundMessage.objects.exists()
