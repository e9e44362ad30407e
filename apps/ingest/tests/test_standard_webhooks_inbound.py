"""An inbound channel verifying Standard Webhooks: requests signed with the ``standardwebhooks``
package, as a sender using it signs them, are taken; a retry with the same webhook-id is the
message already stored; anything unsigned, altered, stale or signed with another secret is 401."""

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from apps.ingest.models import InboundMessage
from apps.ingest.webhooks import forget_channels, signature_for
from apps.partners.credentials import channel_webhook_secret_set, webhook_secret_generate
from apps.partners.models import Channel, Partner
from apps.partners.standard_webhooks import secret_generate

from .conftest import as_body, order_created

pytestmark = pytest.mark.django_db(transaction=True)
URL = reverse("webhook", args=["WMS", "events"])


@pytest.fixture
def channel(db) -> Channel:
    partner = Partner.objects.create(code="WMS", name="Orders system", kind=Partner.Kind.ERP)
    channel = Channel.objects.create(
        partner=partner,
        code="events",
        format=Channel.Format.JSON,
        signature_scheme=Channel.SignatureScheme.STANDARD,
        webhook_secret=secret_generate(),
    )
    forget_channels()
    return channel


def post(client, body: bytes, *, secret: str, message_id: str = "msg_1", at: datetime | None = None, **extra):
    at = at or datetime.now(tz=UTC)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }
    headers |= extra
    return client.post(URL, body, content_type="application/json", headers=headers)


def test_a_request_signed_with_the_channel_secret_is_stored_and_its_retry_is_the_same_message(client, channel):
    body = as_body(order_created("SO-1"))

    first = post(client, body, secret=channel.webhook_secret)
    retry = post(client, body, secret=channel.webhook_secret)

    assert first.status_code == 202, first.content
    assert (retry.status_code, retry.json()["id"], retry.json()["duplicate"]) == (200, first.json()["id"], True)
    message = InboundMessage.objects.get()
    assert (message.partner.code, message.idempotency_key, message.status) == ("WMS", "msg_1", "processed")


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        ({"secret": "whsec_" + base64.b64encode(b"another key, not the channel's!").decode()}, "does not match"),
        ({"body": b'{"kind": "order.created"}'}, "does not match"),
        ({"at": datetime.now(tz=UTC) - timedelta(minutes=6)}, "more than 300 seconds"),
        ({"webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl"}, "does not match"),
        ({"webhook-id": ""}, "headers are required"),
        ({"webhook-timestamp": "yesterday"}, "unix seconds"),
    ],
)
def test_a_request_not_signed_by_the_channel_secret_is_401_and_nothing_is_stored(client, channel, tamper, detail):
    body = as_body(order_created("SO-1"))
    secret = tamper.pop("secret", channel.webhook_secret)
    signed_body = body
    body = tamper.pop("body", body)
    at = tamper.pop("at", None)
    at = at or datetime.now(tz=UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", at, signed_body),
        **tamper,
    }

    response = client.post(URL, body, content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert not InboundMessage.objects.exists()


def test_our_own_signature_headers_do_not_pass_on_a_standard_webhooks_channel(client, channel):
    body = as_body(order_created("SO-1"))
    stamp = str(int(time.time()))

    response = client.post(
        URL,
        body,
        content_type="application/json",
        headers={"X-Timestamp": stamp, "X-Signature": signature_for(channel.webhook_secret, stamp, body)},
    )

    assert response.status_code == 401
    assert not InboundMessage.objects.exists()


def test_after_a_rotation_the_previous_secret_verifies_until_its_grace_ends(client, channel, settings):
    settings.SECRET_ROTATION_GRACE_SECONDS = 3600
    old = channel.webhook_secret
    channel_webhook_secret_set(channel=channel)
    forget_channels()

    during = post(client, as_body(order_created("SO-1")), secret=old, message_id="msg_1")
    later = timezone.now() + timedelta(seconds=3601)
    with time_machine.travel(later, tick=False):
        forget_channels()
        after = post(client, as_body(order_created("SO-2")), secret=old, message_id="msg_2", at=later)

    assert during.status_code == 202, during.content
    assert after.status_code == 401
    assert InboundMessage.objects.count() == 1


def test_a_generated_channel_secret_is_a_standard_webhooks_key():
    secret = webhook_secret_generate()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    Webhook(secret)  # the package takes it as it is
