"""The pieces a user relies on after an apply are wired in: invoicing and detection react to what
the pipeline applied, the periodic sweep catches what a reaction missed, and the admin's replay
action really replays. Each test fails when its wire is cut."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import Invoice, InvoiceRule
from apps.billing.tasks import invoice_sweep_task
from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.partners.models import Partner

pytestmark = pytest.mark.django_db(transaction=True)
WHEN = timezone.now() - timedelta(days=3)


def _event(event_id: str, kind: str, hours: int, *refs: tuple[str, str], **fields) -> dict:
    references = [{"kind": kind_, "value": value} for kind_, value in refs]
    occurred = (WHEN + timedelta(hours=hours)).isoformat()
    return {"event_id": event_id, "kind": kind, "occurred_at": occurred, "references": references, **fields}


def _send(sender: Partner, *events: dict) -> InboundMessage:
    body = json.dumps({"events": list(events)}).encode()
    message, _ = message_receive(body=body, source="api", partner=sender, format="json", enqueue=False)
    message_process(message.pk)
    message.refresh_from_db()
    assert message.status == InboundMessage.Status.PROCESSED, message.error
    return message


@pytest.fixture
def story():
    """ACME invoices on proof of delivery; SO-1 is shipped by DC1 with UPSN, not delivered yet."""
    erp = Partner.objects.create(code="ERP", name="ERP", kind=Partner.Kind.ERP)
    warehouse = Partner.objects.create(code="DC1", name="DC1", kind=Partner.Kind.WAREHOUSE)
    carrier = Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER)
    acme = Partner.objects.create(code="ACME", name="Acme", kind=Partner.Kind.CUSTOMER)
    InvoiceRule.objects.create(customer=acme, trigger="proof_of_delivery", granularity="when_complete")
    ExceptionRule.objects.create(code="damaged_or_refused", title="Damaged or refused", queue="customer_service")
    lines = [{"sku": "SKU-1", "quantity": "2", "unit_price": "10"}]
    _send(erp, _event("so", "order.created", 0, ("order", "SO-1"), order={"customer": "ACME"}, lines=lines))
    shipment = (("shipment", "SH-1"), ("tracking", "1Z1"), ("order", "SO-1"))
    _send(warehouse, _event("asn", "shipment.manifested", 5, *shipment, attributes={"carrier": "UPSN"}, lines=lines))
    return carrier


def test_a_delivery_through_the_pipeline_invoices_the_order(story):
    _send(story, _event("pod", "shipment.delivered", 30, ("tracking", "1Z1")))
    invoice = Invoice.objects.get()
    assert (invoice.order.number, invoice.status) == ("SO-1", "generated")


def test_damage_reported_through_the_pipeline_opens_a_case(story):
    _send(story, _event("dmg", "shipment.damaged", 20, ("tracking", "1Z1")))
    case = ExceptionCase.objects.get(rule__code="damaged_or_refused")
    assert case.status == "open"


def test_the_periodic_invoice_sweep_invoices_what_no_reaction_did(story, settings):
    settings.TIMELINE_REACTIONS = [r for r in settings.TIMELINE_REACTIONS if "invoice" not in r]
    _send(story, _event("pod", "shipment.delivered", 30, ("tracking", "1Z1")))
    assert not Invoice.objects.exists()

    assert invoice_sweep_task() == 1
    assert Invoice.objects.get().order.number == "SO-1"


def test_the_admin_replay_action_processes_dead_letters_again(story, admin_client):
    carrier = story
    carrier.active = False
    carrier.save()
    message, _ = message_receive(
        body=json.dumps(_event("late", "shipment.delivered", 30, ("tracking", "1Z1"))).encode(),
        source="api",
        partner=carrier,
        format="json",
        enqueue=False,
    )
    message_process(message.pk)
    message.refresh_from_db()
    assert message.status == InboundMessage.Status.DEAD
    carrier.active = True
    carrier.save()

    url = reverse("admin:ingest_inboundmessage_changelist")
    admin_client.post(url, {"action": "replay", "_selected_action": [message.pk]})

    message.refresh_from_db()
    assert message.status == InboundMessage.Status.PROCESSED
    assert Invoice.objects.get().order.number == "SO-1"
