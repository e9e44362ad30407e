"""Fixtures for the timeline read side: partners, an order story built through apply_events, users."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.partners.models import Channel, Partner
from apps.timeline.events import EventSource, parse_events
from apps.timeline.models import Order
from apps.timeline.services import ApplyResult, apply_events
from tests.factories import UserFactory

Apply = Callable[..., ApplyResult]


# Stories are told in hours before the moment the tests start, so every event is in the past.
NOW: datetime = timezone.now().replace(microsecond=0)


def ago(hours: float) -> str:
    return (NOW - timedelta(hours=hours)).isoformat()


def ref(kind: str, value: str) -> dict[str, str]:
    return {"kind": kind, "value": value}


@pytest.fixture
def partners() -> dict[str, Partner]:
    made = {
        "ACME": Partner.objects.create(code="ACME", name="Acme Retail", kind=Partner.Kind.CUSTOMER),
        "ERP": Partner.objects.create(code="ERP", name="Acme ERP", kind=Partner.Kind.ERP),
        "DCLYON": Partner.objects.create(code="DCLYON", name="DC Lyon", kind=Partner.Kind.WAREHOUSE),
        "UPSN": Partner.objects.create(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER),
    }
    Channel.objects.create(partner=made["DCLYON"], code="edi", name="DC Lyon EDI", format=Channel.Format.X12)
    Channel.objects.create(partner=made["UPSN"], code="hook", name="UPS webhook", format=Channel.Format.WEBHOOK)
    Channel.objects.create(partner=made["ERP"], code="api", name="ERP API", format=Channel.Format.API)
    return made


@pytest.fixture
def apply() -> Apply:
    def _apply(*items: dict[str, Any], partner: str | None = None, channel: str | None = None) -> ApplyResult:
        return apply_events(parse_events(list(items), source=EventSource(partner=partner, channel=channel)))

    return _apply


def event(event_id: str, kind: str, hours_ago: float, *refs: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "kind": kind, "occurred_at": ago(hours_ago), "references": list(refs), **fields}


def create_order(number: str, hours_ago: float, *, promised_hours_ago: float, **fields: Any) -> dict[str, Any]:
    return event(
        f"{number}-created",
        "order.created",
        hours_ago,
        ref("order", number),
        ref("po", f"PO-{number}"),
        order={"customer": "ACME", "promised_at": ago(promised_hours_ago), "region": "EU-West"},
        lines=[{"sku": "SKU-1", "quantity": "5", "unit_price": "12.50"}, {"sku": "SKU-2", "quantity": "1"}],
        currency="EUR",
        **fields,
    )


@pytest.fixture
def story(partners, apply) -> Order:
    """SO-100001: promised two days ago, shipped, in transit with an estimate after the promise, invoiced.

    Events arrive out of time order and from three partners, to show the page sorts them.
    """
    apply(create_order("SO-100001", 120, promised_hours_ago=48), partner="ERP", channel="api")
    apply(
        event(
            "ship-1",
            "shipment.manifested",
            90,
            ref("shipment", "SH-9001"),
            ref("tracking", "1Z999AA10123456784"),
            ref("bol", "BOL-55"),
            ref("order", "SO-100001"),
            attributes={"carrier": "UPSN", "warehouse": "DCLYON"},
            lines=[{"sku": "SKU-1", "quantity": "5"}],
        ),
        event("pick-1", "order.picked", 100, ref("order", "SO-100001"), location={"name": "DC Lyon", "country": "FR"}),
        partner="DCLYON",
        channel="edi",
    )
    apply(
        event(
            "ups-eta",
            "shipment.eta_updated",
            60,
            ref("tracking", "1Z999AA10123456784"),
            estimated_delivery_at=ago(-24),
        ),
        event(
            "ups-transit",
            "shipment.in_transit",
            70,
            ref("tracking", "1Z999AA10123456784"),
            location={"city": "Paris", "country": "FR"},
        ),
        partner="UPSN",
        channel="hook",
    )
    apply(
        event(
            "inv-1",
            "invoice.generated",
            50,
            ref("invoice", "INV-7001"),
            ref("order", "SO-100001"),
            amount="60.00",
            currency="EUR",
        ),
        partner="ERP",
        channel="api",
    )
    return Order.objects.get(number="SO-100001")


# What a Finance person reads: timelines, with freight and invoice amounts.
READER = ["timeline.view_order", "billing.view_freight_amounts", "billing.view_invoice_amounts"]


@pytest.fixture
def user():
    return UserFactory(username="agent", permissions=READER)


@pytest.fixture
def agent_client(client, user):
    client.force_login(user)
    return client
