"""Partners, channels and tokens for the receiver and pipeline tests."""

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.partners.models import Channel, Partner
from apps.partners.services import api_token_create

WEBHOOK_SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def erp(db) -> Partner:
    partner = Partner.objects.create(code="ERP", name="Corporate ERP", kind=Partner.Kind.ERP)
    Channel.objects.create(partner=partner, code="events", format=Channel.Format.JSON)
    return partner


@pytest.fixture
def carrier(db) -> Partner:
    partner = Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER, time_zone="America/New_York")
    Channel.objects.create(partner=partner, code="hook", format=Channel.Format.WEBHOOK, webhook_secret=WEBHOOK_SECRET)
    return partner


@pytest.fixture
def erp_api(erp) -> APIClient:
    _, raw = api_token_create(partner=erp, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def order_created(number: str = "SO-1", **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{number}-created",
        "kind": "order.created",
        "occurred_at": "2026-11-20T14:03:00+01:00",
        "references": [{"kind": "order", "value": number}],
        **fields,
    }


def as_body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()
