"""The messages and events APIs look their token up once a moment per process, as webhooks do
their channel.

A revoked token, a deactivated partner or changed scopes take effect at once in the process that
made the change, and elsewhere within ``WEBHOOK_CHANNEL_CACHE_SECONDS``.
"""

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from apps.ingest.models import InboundMessage
from apps.partners.models import ApiToken, Partner
from apps.partners.services import api_token_create, api_token_revoke

from .conftest import order_created

pytestmark = pytest.mark.django_db(transaction=True)
EVENTS = reverse("api-events")
MESSAGES = reverse("api-messages")


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[int]:
    """Messages handed to the queue, instead of processed in-process."""
    from apps.ingest import services

    handed: list[int] = []
    monkeypatch.setattr(services, "enqueue_processing", lambda messages: handed.extend(m.pk for m in messages))
    return handed


@pytest.fixture
def kept_a_minute(settings):
    settings.WEBHOOK_CHANNEL_CACHE_SECONDS = 60


def client_with(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def post_event(client: APIClient, number: str):
    return client.post(EVENTS, json.dumps(order_created(number)), content_type="application/json")


def post_document(client: APIClient, number: str):
    return client.post(MESSAGES + "?format=csv", f"order,sku\n{number},A\n".encode(), content_type="text/csv")


def test_a_kept_token_still_works_and_is_not_read_again(erp, kept_a_minute, django_assert_num_queries):
    _, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_document(api, "SO-1").status_code == 202

    with django_assert_num_queries(1):  # the insert
        assert post_document(api, "SO-2").status_code == 202
    with CaptureQueriesContext(connection) as queries:
        assert post_event(api, "SO-3").status_code == 202

    assert not [query for query in queries.captured_queries if "partners_apitoken" in query["sql"]]
    assert InboundMessage.objects.filter(partner=erp).count() == 3


def test_a_token_is_read_again_after_a_change_here(erp, kept_a_minute, django_assert_num_queries):
    _, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_document(api, "SO-1").status_code == 202  # its first use is recorded then

    api_token_create(partner=erp, name="another")  # a token saved here forgets every kept one
    with django_assert_num_queries(2):  # the token and its partner, the insert
        assert post_document(api, "SO-2").status_code == 202


def test_a_revoked_token_is_refused_at_once_in_this_process(erp, kept_a_minute):
    token, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_event(api, "SO-1").status_code == 202

    api_token_revoke(token=token)

    assert post_event(api, "SO-2").status_code == 401
    assert post_document(api, "SO-3").status_code == 401
    assert InboundMessage.objects.count() == 1


def test_a_token_revoked_in_the_admin_is_refused_at_once(erp, kept_a_minute, admin_client):
    token, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_event(api, "SO-1").status_code == 202

    admin_client.post(
        reverse("admin:partners_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )

    assert post_event(api, "SO-2").status_code == 401


def test_a_deactivated_partners_token_is_refused_at_once_in_this_process(erp, kept_a_minute):
    _, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_event(api, "SO-1").status_code == 202

    erp.active = False
    erp.save()

    response = post_event(api, "SO-2")
    assert response.status_code == 401
    assert "inactive" in response.json()["detail"]


def test_a_token_revoked_by_another_process_is_refused_within_the_cache_time(erp, settings):
    settings.WEBHOOK_CHANNEL_CACHE_SECONDS = 0.3
    _, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_event(api, "SO-1").status_code == 202
    ApiToken.objects.update(revoked_at="2026-01-01T00:00Z")  # no signal here: as another process would

    time.sleep(0.35)

    assert post_event(api, "SO-2").status_code == 401
    assert InboundMessage.objects.count() == 1


def test_a_partner_deactivated_by_another_process_is_refused_within_the_cache_time(erp, settings):
    settings.WEBHOOK_CHANNEL_CACHE_SECONDS = 0.3
    _, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_event(api, "SO-1").status_code == 202
    Partner.objects.filter(pk=erp.pk).update(active=False)

    time.sleep(0.35)

    assert post_event(api, "SO-2").status_code == 401


def test_a_kept_token_checks_its_secret_on_every_request(erp, kept_a_minute):
    _, raw = api_token_create(partner=erp, name="erp")
    assert post_event(client_with(raw), "SO-1").status_code == 202

    assert post_event(client_with(raw[:-2] + "xx"), "SO-2").status_code == 401
    assert post_event(client_with(raw), "SO-3").status_code == 202


def test_scopes_narrowed_in_the_admin_apply_to_the_next_request(erp, kept_a_minute, admin_client):
    token, raw = api_token_create(partner=erp, name="erp")
    api = client_with(raw)
    assert post_event(api, "SO-1").status_code == 202

    change = reverse("admin:partners_apitoken_change", args=[token.pk])
    admin_client.post(change, {"scopes": ["invoices"]})
    token.refresh_from_db()
    assert token.scopes == ["invoices"]

    assert post_event(api, "SO-2").status_code == 403
