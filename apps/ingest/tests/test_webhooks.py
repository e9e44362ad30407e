import time

import pytest
from django.urls import reverse

from apps.ingest.models import InboundMessage
from apps.ingest.webhooks import signature_for

from .conftest import WEBHOOK_SECRET, as_body, order_created

# Real commits: receivers queue processing on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)
URL = reverse("webhook", args=["UPSN", "hook"])


def _post(client, body: bytes, *, timestamp: int | None = None, signature: str | None = None, secret=WEBHOOK_SECRET):
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    headers = {"HTTP_X_TIMESTAMP": stamp, "HTTP_X_SIGNATURE": signature or signature_for(secret, stamp, body)}
    return client.post(URL, body, content_type="application/json", **headers)


def test_a_signed_webhook_is_stored_and_processed(client, carrier):
    response = _post(client, as_body(order_created("SO-1")))
    assert response.status_code == 202, response.content
    message = InboundMessage.objects.get()
    assert (message.partner, message.source, message.status) == (carrier, "webhook", "processed")


def test_a_wrong_signature_is_401_and_nothing_is_stored(client, carrier):
    response = _post(client, as_body(order_created()), secret="not-the-secret")
    assert response.status_code == 401
    assert "does not match" in response.json()["detail"]
    assert not InboundMessage.objects.exists()


def test_a_body_changed_after_signing_is_refused(client, carrier):
    stamp = str(int(time.time()))
    signature = signature_for(WEBHOOK_SECRET, stamp, as_body(order_created("SO-1")))
    response = _post(client, as_body(order_created("SO-2")), timestamp=int(stamp), signature=signature)
    assert response.status_code == 401


@pytest.mark.parametrize("age", [330, -330, 3600])  # clear of the 300 s edge, whatever the clock does meanwhile
def test_a_timestamp_more_than_five_minutes_away_is_refused(client, carrier, age):
    response = _post(client, as_body(order_created()), timestamp=int(time.time()) - age)
    assert response.status_code == 401
    assert "seconds away" in response.json()["detail"]


def test_a_replayed_signature_is_refused(client, carrier):
    body = as_body(order_created())
    stamp = int(time.time())
    assert _post(client, body, timestamp=stamp).status_code == 202
    replay = _post(client, body, timestamp=stamp)
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]


def test_missing_headers_and_unknown_channels_are_refused(client, carrier):
    assert client.post(URL, b"{}", content_type="application/json").status_code == 401
    other = reverse("webhook", args=["UPSN", "nope"])
    assert client.post(other, b"{}", content_type="application/json").status_code == 404


def test_a_channel_without_a_secret_accepts_nothing(client, carrier):
    carrier.channels.update(webhook_secret="")
    response = _post(client, as_body(order_created()))
    assert response.status_code == 401
    assert "no webhook secret" in response.json()["detail"]
