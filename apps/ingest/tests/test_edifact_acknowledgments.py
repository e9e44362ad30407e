"""Inbound EDIFACT through the pipeline: its CONTRL stored and delivered to EDIFACT subscriptions."""

from pathlib import Path

import pytest

from apps.ingest.models import InboundMessage, OutboundMessage
from apps.ingest.services import message_process, message_receive
from apps.outbound.models import Delivery
from apps.outbound.routing import subscription_errors
from apps.partners.models import Partner
from tests.factories import ChannelFactory, EdiIdentifierFactory, PartnerFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

DOCUMENTS = Path(__file__).parent / "documents" / "edifact"


@pytest.fixture
def carrier(settings, tmp_path):
    settings.OUTBOX_DIR = tmp_path
    partner = PartnerFactory(code="NORDFRACHT", kind=Partner.Kind.CARRIER)
    EdiIdentifierFactory(partner=partner, qualifier="14", value="5412345000013")
    return partner


def subscription(partner: Partner, fmt: str):
    channel = ChannelFactory(partner=partner, code=f"{fmt}-out", format=fmt, direction="outbound")
    return SubscriptionFactory(
        partner=partner, channel=channel, target_url="", format=fmt, event_kinds=[], acknowledgments=True
    )


def process(partner: Partner, body: bytes, capture) -> InboundMessage:
    message, _ = message_receive(body=body, source="file", partner=partner, enqueue=False)
    with capture(execute=True):
        message_process(message.pk)
    message.refresh_from_db()
    return message


def test_an_interchange_has_its_contrl_delivered_to_the_senders_edifact_subscription_only(
    carrier, settings, django_capture_on_commit_callbacks
):
    settings.EDIFACT_SENDER_ID = "CTHUB"
    edifact, x12 = subscription(carrier, "edifact"), subscription(carrier, "x12")

    message = process(carrier, (DOCUMENTS / "iftsta_d01b.edi").read_bytes(), django_capture_on_commit_callbacks)

    contrl = OutboundMessage.objects.get(inbound=message)
    assert (contrl.kind, contrl.format, contrl.ack_status) == ("CONTRL", "edifact", "accepted")
    assert "UNB+UNOC:3+CTHUB:ZZZ+5412345000013:14+" in contrl.body
    assert "UCI+IF0042+5412345000013:14+8712345000005:14+7'" in contrl.body
    delivery = Delivery.objects.get(subscription=edifact)
    assert (delivery.document, delivery.kind, delivery.status) == (contrl, "CONTRL", Delivery.Status.DELIVERED)
    assert not Delivery.objects.filter(subscription=x12).exists()
    [written] = (settings.OUTBOX_DIR / "NORDFRACHT" / "edifact-out").iterdir()
    assert written.suffix == ".edi"
    assert written.read_text() == contrl.body


def test_an_interchange_that_cannot_be_read_is_a_dead_letter_answered_with_a_rejection(
    carrier, django_capture_on_commit_callbacks
):
    edifact = subscription(carrier, "edifact")
    body = b"UNB+UNOA:3+5412345000013:14+8712345000005:14+261120:1000+BAD1'<html>not an interchange</html>"

    message = process(carrier, body, django_capture_on_commit_callbacks)

    assert message.status == InboundMessage.Status.DEAD
    contrl = OutboundMessage.objects.get(inbound=message, kind="CONTRL")
    assert contrl.ack_status == "rejected"
    assert "UCI+BAD1+5412345000013:14+8712345000005:14+4+33'" in contrl.body
    assert Delivery.objects.get(subscription=edifact).document == contrl


def test_edifact_subscriptions_carry_acknowledgments_only():
    common = {
        "partner": None,
        "target_url": "",
        "channel_partner_id": None,
        "has_channel": True,
        "has_edi_id": False,
    }

    assert subscription_errors(event_kinds=[], format="edifact", acknowledgments=True, **common) == {}
    errors = subscription_errors(event_kinds=["shipment.*"], format="edifact", acknowledgments=True, **common)
    assert "CONTRL" in errors["event_kinds"]
