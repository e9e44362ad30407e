import secrets
import time
from datetime import UTC, datetime

import pytest
import time_machine
from django.urls import reverse
from django.views.debug import ExceptionReporter

from apps.ingest.models import InboundMessage
from apps.ingest.webhooks import signature_for, verify_signature
from apps.partners.credentials import channel_webhook_secret_set

from .conftest import WEBHOOK_SECRET, as_body, order_created

# Real commits: receivers queue processing on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)
URL = reverse("webhook", args=["UPSN", "hook"])


def _post(client, body: bytes, *, timestamp: int | None = None, signature: str | None = None, secret=WEBHOOK_SECRET):
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    headers = {"HTTP_X_TIMESTAMP": stamp, "HTTP_X_SIGNATURE": signature or signature_for(secret, stamp, body)}
    return client.post(URL, body, content_type="application/json", **headers)


def test_a_signed_webhook_is_stored_and_processed(client, carrier):
    scan = {
        **order_created("SO-1"),
        "kind": "shipment.in_transit",
        "references": [{"kind": "tracking", "value": "1Z1"}],
    }
    response = _post(client, as_body(scan))
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


# --- rotation ------------------------------------------------------------------------------------------


def _rotate(carrier) -> str:
    return channel_webhook_secret_set(channel=carrier.channels.get(code="hook"))


def test_after_a_rotation_the_previous_secret_verifies_until_the_grace_period_ends(client, carrier, settings):
    settings.SECRET_ROTATION_GRACE_SECONDS = 3600
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        new = _rotate(carrier)

        assert _post(client, as_body(order_created("SO-1")), secret=WEBHOOK_SECRET).status_code == 202
        assert _post(client, as_body(order_created("SO-2")), secret=new).status_code == 202
        clock.shift(3599)
        assert _post(client, as_body(order_created("SO-3")), secret=WEBHOOK_SECRET).status_code == 202
        clock.shift(2)
        refused = _post(client, as_body(order_created("SO-4")), secret=WEBHOOK_SECRET)
        assert _post(client, as_body(order_created("SO-5")), secret=new).status_code == 202

    assert refused.status_code == 401
    assert "does not match" in refused.json()["detail"]
    assert InboundMessage.objects.count() == 4


def test_a_second_rotation_ends_the_first_secrets_grace(client, carrier):
    first = _rotate(carrier)
    second = _rotate(carrier)

    assert _post(client, as_body(order_created("SO-1")), secret=WEBHOOK_SECRET).status_code == 401
    assert _post(client, as_body(order_created("SO-2")), secret=first).status_code == 202
    assert _post(client, as_body(order_created("SO-3")), secret=second).status_code == 202


def test_during_the_grace_period_a_random_secret_is_still_refused(client, carrier):
    _rotate(carrier)

    response = _post(client, as_body(order_created()), secret=secrets.token_urlsafe(32))

    assert response.status_code == 401
    assert not InboundMessage.objects.exists()


def test_an_error_while_verifying_keeps_the_secrets_out_of_the_error_report(carrier, monkeypatch):
    def cache_down(*args, **kwargs):
        raise ConnectionError("cache unreachable")

    monkeypatch.setattr("apps.ingest.webhooks.cache.add", cache_down)
    new = _rotate(carrier)
    channel = carrier.channels.get(code="hook")
    stamp, body = str(int(time.time())), as_body(order_created())

    with pytest.raises(ConnectionError) as error:
        verify_signature(channel=channel, timestamp=stamp, signature=signature_for(new, stamp, body), body=body)
    # From the call on: this test's own frame holds the secrets.
    report = ExceptionReporter(None, error.type, error.value, error.tb.tb_next).get_traceback_html()

    assert "verify_signature" in report
    assert WEBHOOK_SECRET not in report
    assert new not in report
