"""Event ids are unique per source partner: no partner can pre-send another's (predictable) id
and have its real event dropped as a duplicate, while a partner's own resend stays a duplicate."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.outbound.models import OutboundEvent
from apps.partners.models import Partner
from apps.partners.services import api_token_create
from apps.timeline.events import EventKey, EventSource, parse_events
from apps.timeline.models import Milestone, MilestoneReport, Order, ParkedEvent, Shipment
from apps.timeline.services import ApplyResult, apply_events
from tests.factories import MilestoneFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
T0 = timezone.now() - timedelta(days=2)


def ev(event_id: str, kind: str, *refs: tuple[str, str], hours: float = 0, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
        "references": [{"kind": ref_kind, "value": value} for ref_kind, value in refs],
        **fields,
    }


def send(sender: str, *items: dict[str, Any]) -> ApplyResult:
    return apply_events(parse_events(list(items), source=EventSource(partner=sender)))


@pytest.fixture
def parties() -> dict[str, Partner]:
    codes = {"ERP": Partner.Kind.ERP, "ERP2": Partner.Kind.ERP, "DC1": Partner.Kind.WAREHOUSE}
    codes |= {"UPSN": Partner.Kind.CARRIER}
    return {code: Partner.objects.create(code=code, name=code, kind=kind) for code, kind in codes.items()}


def test_a_partner_cannot_pre_send_another_partners_event_id(parties):
    send(
        "ERP",
        ev("SO-1-created", "order.created", ("order", "SO-1")),
        ev("SO-1-released", "order.released", ("order", "SO-1"), hours=1, attributes={"warehouse": "DC1"}),
    )
    refs = (("shipment", "SH-1"), ("order", "SO-1"))
    send("DC1", ev("SH-1-manifested", "shipment.manifested", *refs, hours=2, attributes={"carrier": "UPSN"}))
    # The ERP guesses the carrier's next id and sends it first, about an order of its own.
    send("ERP", ev("1Z1-delivered", "order.created", ("order", "SO-2")))

    result = send("UPSN", ev("1Z1-delivered", "shipment.delivered", ("shipment", "SH-1"), hours=5))

    assert result.applied == [EventKey("UPSN", "1Z1-delivered")]
    assert result.duplicates == []
    assert Shipment.objects.get(number="SH-1").status == "delivered"
    assert set(Milestone.objects.filter(event_id="1Z1-delivered").values_list("source_partner__code", "kind")) == {
        ("ERP", "order.created"),
        ("UPSN", "shipment.delivered"),
    }


def test_a_partner_resending_its_own_event_id_is_a_duplicate_whatever_it_says(parties):
    send("ERP", ev("E1", "order.created", ("order", "SO-1")))

    again = send("ERP", ev("E1", "order.created", ("order", "SO-9")), ev("E1", "order.created", ("order", "SO-9")))

    assert again.applied == []
    assert again.duplicates == [EventKey("ERP", "E1")] * 2
    assert not Order.objects.filter(number="SO-9").exists()


def test_two_senders_of_one_id_in_one_batch_are_both_applied(parties):
    result = apply_events(
        [
            *parse_events([ev("E1", "order.created", ("order", "SO-1"))], source=EventSource(partner="ERP")),
            *parse_events([ev("E1", "order.created", ("order", "SO-2"))], source=EventSource(partner="ERP2")),
        ]
    )

    assert sorted(result.applied) == [EventKey("ERP", "E1"), EventKey("ERP2", "E1")]
    assert set(Order.objects.values_list("number", flat=True)) == {"SO-1", "SO-2"}


def test_events_of_one_id_from_two_senders_wait_parked_side_by_side_and_both_apply(parties):
    send("ERP", ev("E1", "invoice.generated", ("order", "SO-1"), hours=3, amount="10", currency="EUR"))
    send("ERP2", ev("E1", "invoice.generated", ("order", "SO-1"), hours=4, amount="12", currency="EUR"))
    assert ParkedEvent.objects.filter(event_id="E1").count() == 2

    result = send("ERP", ev("SO-1-created", "order.created", ("order", "SO-1")))

    assert sorted(result.unparked) == [EventKey("ERP", "E1"), EventKey("ERP2", "E1")]
    assert not ParkedEvent.objects.exists()
    assert Milestone.objects.filter(event_id="E1", kind="invoice.generated").count() == 2


def test_the_same_milestone_sent_by_two_partners_under_one_id_is_recorded_once_with_a_report(parties):
    send("ERP", ev("SO-1-created", "order.created", ("order", "SO-1")))
    released = ev("rel", "order.released", ("order", "SO-1"), hours=1, attributes={"warehouse": "DC1"})

    send("ERP2", released)
    send("ERP", released)

    milestone = Milestone.objects.get(kind="order.released")
    report = MilestoneReport.objects.get()
    first = min(parties["ERP"].pk, parties["ERP2"].pk)
    assert (milestone.event_id, milestone.source_partner_id) == ("rel", first)
    assert (report.event_id, report.milestone, report.source_partner_id != first) == ("rel", milestone, True)
    assert send("ERP2", released).duplicates == [EventKey("ERP2", "rel")]


def test_subscribers_receive_both_events_that_share_an_id(parties):
    SubscriptionFactory(event_kinds=["order.*"])

    send("ERP", ev("E1", "order.created", ("order", "SO-1")))
    send("ERP2", ev("E1", "order.created", ("order", "SO-2")))

    published = OutboundEvent.objects.filter(event_id="E1")
    assert {(event.source_partner.code, event.payload["source"]["partner"]) for event in published} == {
        ("ERP", "ERP"),
        ("ERP2", "ERP2"),
    }
    assert all(event.deliveries.count() == 1 for event in published)


def test_the_database_holds_an_event_id_once_per_sender(parties):
    order = Order.objects.create(number="SO-1")
    MilestoneFactory(event_id="E1", order=order, source_partner=parties["ERP"], source_channel=None)
    MilestoneFactory(event_id="E1", order=order, source_partner=parties["ERP2"], source_channel=None)
    MilestoneFactory(event_id="E1", order=order, source_partner=None, source_channel=None)

    for sender in (parties["ERP"], None):
        with pytest.raises(IntegrityError), transaction.atomic():
            MilestoneFactory(event_id="E1", order=order, source_partner=sender, source_channel=None)


def test_a_refused_event_is_named_by_its_own_id_in_the_answer(parties, client):
    _, raw = api_token_create(partner=parties["UPSN"], name="t")
    body = {"events": [ev("E1", "invoice.released", ("order", "SO-1"))]}

    response = client.post(
        "/api/v1/events/", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )

    assert response.status_code == 403
    assert response.json()["refused"][0]["event_id"] == "E1"
