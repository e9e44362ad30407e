"""The webhook receiver does the minimum before its answer: verify, one INSERT, enqueue.

Channels are kept a moment per process; changes made elsewhere reach it within
``WEBHOOK_CHANNEL_CACHE_SECONDS``, changes made in the process at once, and a rotated secret at
the first request signed with it.
"""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.ingest.models import InboundMessage
from apps.ingest.webhooks import signature_for
from apps.partners.credentials import channel_webhook_secret_set
from apps.partners.models import Channel, Partner

from .conftest import WEBHOOK_SECRET, as_body, order_created

pytestmark = pytest.mark.django_db(transaction=True)
URL = reverse("webhook", args=["UPSN", "hook"])


def post(client, number: str, *, secret: str = WEBHOOK_SECRET, stamp: int | None = None):
    body = as_body({**order_created(number), "kind": "shipment.in_transit"})
    stamp = str(stamp or int(time.time()))
    return client.post(
        URL,
        body,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=signature_for(secret, stamp, body),
    )


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """Messages handed to the queue, instead of processed in-process."""
    from apps.ingest import services

    handed: list[int] = []
    monkeypatch.setattr(services, "enqueue_processing", lambda messages: handed.extend(m.pk for m in messages))
    return handed


def test_a_webhook_to_a_known_channel_costs_one_insert(client, carrier, queued):
    assert post(client, "SO-1").status_code == 202

    with CaptureQueriesContext(connection) as queries:
        response = post(client, "SO-2")

    assert response.status_code == 202
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"]
    assert queued == list(InboundMessage.objects.order_by("pk").values_list("pk", flat=True))


def test_a_resent_webhook_is_found_after_its_insert_conflicts_and_counted(client, carrier, queued):
    now = int(time.time())
    first = post(client, "SO-1", stamp=now)
    again = post(client, "SO-1", stamp=now - 1)  # signed again, as a sender's retry is

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    assert InboundMessage.objects.get().resent_count == 1
    assert len(queued) == 1


def test_a_partner_deactivated_by_another_process_is_refused_within_the_cache_time(client, carrier, settings):
    settings.WEBHOOK_CHANNEL_CACHE_SECONDS = 0.3
    assert post(client, "SO-1").status_code == 202
    Partner.objects.filter(pk=carrier.pk).update(active=False)  # no signal here: as another process would

    time.sleep(0.35)

    assert post(client, "SO-2").status_code == 404
    assert InboundMessage.objects.count() == 1


def test_a_channel_switched_off_in_this_process_is_refused_at_once(client, carrier, settings):
    settings.WEBHOOK_CHANNEL_CACHE_SECONDS = 60
    assert post(client, "SO-1").status_code == 202
    channel = Channel.objects.get(code="hook")
    channel.active = False
    channel.save()

    assert post(client, "SO-2").status_code == 404


def test_a_rotated_secret_verifies_at_once_even_when_the_channel_was_kept(client, carrier, settings):
    settings.WEBHOOK_CHANNEL_CACHE_SECONDS = 60
    assert post(client, "SO-1").status_code == 202
    new = channel_webhook_secret_set(channel=Channel.objects.get(code="hook"))

    assert post(client, "SO-2", secret=new).status_code == 202
    assert post(client, "SO-3", secret="never-issued").status_code == 401
    assert InboundMessage.objects.count() == 2
