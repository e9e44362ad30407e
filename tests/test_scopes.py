"""Partner scopes: a partner writes only what its kind (or its token and channel) allows, and only
about its own subjects. Nothing out of scope is ever applied, whatever the path or arrival order."""

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.billing.models import Invoice
from apps.ingest.models import InboundMessage
from apps.ingest.services import message_process, message_receive
from apps.inventory.models import InventoryPosition
from apps.partners.models import ApiToken, Channel, Partner
from apps.partners.scopes import DEFAULT_SCOPES, SCOPES
from apps.partners.services import api_token_create
from apps.timeline.events import EventKind, EventSource, parse_events
from apps.timeline.models import Milestone, Order, ParkedEvent, Reference, Shipment
from apps.timeline.services import apply_events, retry_parked_events

pytestmark = pytest.mark.django_db(transaction=True)
EVENTS = reverse("api-events")


def partner(code: str, kind: str) -> Partner:
    return Partner.objects.create(code=code, name=code, kind=kind)


def api(who: Partner, scopes: list[str] | None = None) -> APIClient:
    _, raw = api_token_create(partner=who, name="tests", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def post(client: APIClient, *events: dict[str, Any]):
    return client.post(EVENTS, json.dumps({"events": list(events)}), content_type="application/json")


def ev(event_id: str, kind: str, *refs: tuple[str, str], hours: float = 0, **fields: Any) -> dict[str, Any]:
    occurred = fields.pop("occurred_at", None) or (timezone.now() - timedelta(days=2) + timedelta(hours=hours))
    return {
        "event_id": event_id,
        "kind": kind,
        "occurred_at": occurred.isoformat() if hasattr(occurred, "isoformat") else occurred,
        "references": [{"kind": kind_, "value": value} for kind_, value in refs],
        **fields,
    }


def ours(*items: dict[str, Any], sender: str | None = None) -> None:
    """Apply as our own tools would (no partner) or as ``sender`` with its kind's defaults."""
    apply_events(parse_events(list(items), source=EventSource(partner=sender)))


@pytest.fixture
def world():
    """An ERP, two warehouses, two carriers and a customer; SO-1 released to DC1, shipped SH-1 by UPSN."""
    parties = {
        "ERP": partner("ERP", Partner.Kind.ERP),
        "DC1": partner("DC1", Partner.Kind.WAREHOUSE),
        "DC2": partner("DC2", Partner.Kind.WAREHOUSE),
        "UPSN": partner("UPSN", Partner.Kind.CARRIER),
        "FDEG": partner("FDEG", Partner.Kind.CARRIER),
        "ACME": partner("ACME", Partner.Kind.CUSTOMER),
        "BETA": partner("BETA", Partner.Kind.CUSTOMER),
    }
    ours(
        ev("so1", "order.created", ("order", "SO-1"), order={"customer": "ACME"}),
        ev("rel1", "order.released", ("order", "SO-1"), hours=1, attributes={"warehouse": "DC1"}),
        sender="ERP",
    )
    refs = (("shipment", "SH-1"), ("tracking", "1Z1"), ("order", "SO-1"))
    ours(ev("sh1", "shipment.manifested", *refs, hours=2, attributes={"carrier": "UPSN"}), sender="DC1")
    assert Shipment.objects.filter(number="SH-1", warehouse=parties["DC1"], carrier=parties["UPSN"]).exists()
    return parties


def test_every_kind_has_defaults_and_every_default_names_a_known_scope():
    assert set(DEFAULT_SCOPES) == set(Partner.Kind.values)
    assert {name for names in DEFAULT_SCOPES.values() for name in names} <= set(SCOPES)


def test_new_tokens_and_channels_get_their_partner_kinds_scopes(world):
    token, _ = api_token_create(partner=world["UPSN"], name="t")
    channel = Channel.objects.create(partner=world["DC1"], code="wms", format=Channel.Format.X12)
    assert ApiToken.objects.get(pk=token.pk).scopes == ["carried_shipments", "freight_charges"]
    assert Channel.objects.get(pk=channel.pk).scopes == ["fulfilment", "own_inventory", "returns_received"]


def test_a_carrier_token_cannot_release_an_invoice_finance_put_on_hold(world):
    response = post(api(world["UPSN"]), ev("rel-inv", "invoice.released", ("order", "SO-1")))

    assert response.status_code == 403
    [refused] = response.json()["refused"]
    assert refused["event_id"] == "rel-inv"
    assert refused["kind"] == "invoice.released"
    assert "UPSN may not send invoice.released" in refused["reason"]
    assert not InboundMessage.objects.exists()
    assert not Milestone.objects.filter(kind="invoice.released").exists()


def test_a_request_with_one_event_out_of_scope_is_refused_whole(world):
    response = post(
        api(world["UPSN"]),
        ev("ok", "shipment.in_transit", ("tracking", "1Z1"), hours=3),
        ev("cancel", "order.cancelled", ("order", "SO-1"), hours=3),
    )
    assert response.status_code == 403
    assert [item["event_id"] for item in response.json()["refused"]] == ["cancel"]
    assert not Milestone.objects.filter(event_id__in=["ok", "cancel"]).exists()
    assert Order.objects.get(number="SO-1").cancelled_at is None


def test_the_erp_may_hold_and_release_invoices(world):
    erp = api(world["ERP"])
    assert (
        post(erp, ev("held", "invoice.held", ("order", "SO-1"), hours=5, amount="10", currency="EUR")).status_code
        == 202
    )
    assert post(erp, ev("released", "invoice.released", ("order", "SO-1"), hours=6)).status_code == 202
    assert set(Milestone.objects.filter(kind__startswith="invoice.").values_list("event_id", flat=True)) == {
        "held",
        "released",
    }


def test_an_event_dated_a_year_ahead_is_refused_even_from_a_partner_scoped_for_it(world):
    ahead = timezone.now() + timedelta(days=365)
    response = post(api(world["ERP"]), ev("later", "invoice.released", ("order", "SO-1"), occurred_at=ahead))
    assert response.status_code == 403
    assert "events from the future are refused" in response.json()["refused"][0]["reason"]
    assert not Invoice.objects.exists()


def test_a_warehouse_updates_only_its_own_stock(world):
    snapshot = {"lines": [{"sku": "SKU-1", "quantity": "7"}]}
    other = post(api(world["DC1"]), ev("snap-2", "inventory.snapshot", attributes={"warehouse": "DC2"}, **snapshot))
    assert other.status_code == 403
    assert "names warehouse DC2" in other.json()["refused"][0]["reason"]

    own = post(api(world["DC1"]), ev("snap-1", "inventory.snapshot", **snapshot))
    assert own.status_code == 202
    assert list(InventoryPosition.objects.values_list("warehouse__code", "sku")) == [("DC1", "SKU-1")]


def test_a_carrier_reports_only_the_shipments_it_carries(world):
    foreign = post(api(world["FDEG"]), ev("fd-1", "shipment.delivered", ("tracking", "1Z1"), hours=4))
    assert foreign.status_code == 403
    assert "carried by UPSN" in foreign.json()["refused"][0]["reason"]

    claim = post(
        api(world["FDEG"]), ev("fd-2", "shipment.in_transit", ("tracking", "1Z1"), attributes={"carrier": "FDEG"})
    )
    assert claim.status_code == 403, "naming itself as the carrier does not make a shipment its own"

    own = post(api(world["UPSN"]), ev("up-1", "shipment.delivered", ("tracking", "1Z1"), hours=4))
    assert own.status_code == 202
    assert Shipment.objects.get(number="SH-1").status == "delivered"
    assert Shipment.objects.get(number="SH-1").carrier == world["UPSN"]


def test_a_carrier_event_parked_before_its_ship_notice_is_refused_if_the_notice_names_another_carrier(world):
    assert post(api(world["FDEG"]), ev("early", "shipment.delivered", ("tracking", "9Z9"), hours=5)).status_code == 202
    assert (
        post(api(world["UPSN"]), ev("early-up", "shipment.in_transit", ("tracking", "9Z9"), hours=4)).status_code == 202
    )
    assert set(ParkedEvent.objects.values_list("event_id", flat=True)) == {"early", "early-up"}

    ours(
        ev(
            "sh9",
            "shipment.manifested",
            ("shipment", "SH-9"),
            ("tracking", "9Z9"),
            ("order", "SO-1"),
            hours=3,
            attributes={"carrier": "UPSN"},
        ),
        sender="DC1",
    )

    assert not ParkedEvent.objects.exists()
    assert set(Milestone.objects.filter(shipment__number="SH-9").values_list("event_id", flat=True)) == {
        "sh9",
        "early-up",
    }
    assert Shipment.objects.get(number="SH-9").status == "in_transit"


def test_a_warehouse_works_only_orders_released_to_it(world):
    ours(
        ev("so2", "order.created", ("order", "SO-2")),
        ev("rel2", "order.released", ("order", "SO-2"), hours=1, attributes={"warehouse": "DC2"}),
        sender="ERP",
    )
    refused = post(api(world["DC1"]), ev("pick-2", "order.picked", ("order", "SO-2"), hours=2))
    assert refused.status_code == 403
    assert "released to DC2, not to DC1" in refused.json()["refused"][0]["reason"]

    assert post(api(world["DC1"]), ev("pick-1", "order.picked", ("order", "SO-1"), hours=2)).status_code == 202
    assert Order.objects.get(number="SO-1").picked_at is not None
    assert Order.objects.get(number="SO-2").picked_at is None


def test_a_customer_creates_and_cancels_only_its_own_orders(world):
    acme = api(world["ACME"])
    foreign = post(acme, ev("beta-order", "order.created", ("order", "SO-B"), order={"customer": "BETA"}))
    assert foreign.status_code == 403
    assert post(api(world["BETA"]), ev("cancel-1", "order.cancelled", ("order", "SO-1"), hours=3)).status_code == 403

    assert post(acme, ev("acme-order", "order.created", ("order", "SO-A"))).status_code == 202
    assert post(acme, ev("cancel-own", "order.cancelled", ("order", "SO-1"), hours=3)).status_code == 202
    assert Order.objects.get(number="SO-A").stage == "created"
    assert Order.objects.get(number="SO-1").cancelled_at is not None


def test_a_token_narrower_than_its_kind_is_held_to_its_own_scopes(world):
    orders_only = api(world["ERP"], scopes=["orders"])
    response = post(orders_only, ev("hold", "invoice.held", ("order", "SO-1"), hours=5))
    assert response.status_code == 403
    assert "its scopes: orders" in response.json()["refused"][0]["reason"]


def test_a_channel_narrows_what_a_token_may_send_through_it(world):
    Channel.objects.create(partner=world["ERP"], code="orders", format=Channel.Format.JSON, scopes=["orders"])
    response = api(world["ERP"]).post(
        f"{EVENTS}?channel=orders",
        json.dumps(ev("hold", "invoice.held", ("order", "SO-1"), hours=5)),
        content_type="application/json",
    )
    assert response.status_code == 403


def _document(sender: Partner, *events: dict[str, Any]) -> InboundMessage:
    body = json.dumps({"events": list(events)}).encode()
    message, _ = message_receive(body=body, source="file", partner=sender, format="json", enqueue=False)
    return message


def test_a_file_holding_an_event_out_of_scope_is_a_dead_letter_and_nothing_of_it_is_applied(world):
    message = _document(
        world["UPSN"],
        ev("fine", "shipment.in_transit", ("tracking", "1Z1"), hours=3),
        ev("bad", "invoice.released", ("order", "SO-1"), hours=3),
    )
    message_process(message.pk)

    message.refresh_from_db()
    assert message.status == InboundMessage.Status.DEAD
    assert "bad: UPSN may not send invoice.released" in message.error
    assert not Milestone.objects.filter(event_id__in=["fine", "bad"]).exists()


def test_a_refused_message_in_a_micro_batch_leaves_the_others_applied(world):
    good = _document(world["UPSN"], ev("scan", "shipment.in_transit", ("tracking", "1Z1"), hours=3))
    bad = _document(world["UPSN"], ev("cancel", "order.cancelled", ("order", "SO-1"), hours=3))
    other = _document(world["ERP"], ev("so7", "order.created", ("order", "SO-7")))

    message_process(good.pk, companions=10)

    statuses = dict(InboundMessage.objects.values_list("pk", "status"))
    assert statuses == {good.pk: "processed", bad.pk: "dead", other.pk: "processed"}
    assert set(Milestone.objects.filter(event_id__in=["scan", "cancel", "so7"]).values_list("event_id", flat=True)) == {
        "scan",
        "so7",
    }
    good.refresh_from_db()
    assert (good.attempts, good.applied_count) == (1, 1)


def test_an_inactive_partner_is_cut_off_everywhere(world, client, django_user_model):
    carrier_api = api(world["UPSN"])
    stored = _document(world["UPSN"], ev("scan", "shipment.in_transit", ("tracking", "1Z1"), hours=3))
    Partner.objects.filter(pk=world["UPSN"].pk).update(active=False)

    assert post(carrier_api, ev("s2", "shipment.in_transit", ("tracking", "1Z1"), hours=3)).status_code == 401

    Channel.objects.create(partner=world["UPSN"], code="hook", format=Channel.Format.WEBHOOK, webhook_secret="s" * 32)
    hook = client.post(reverse("webhook", args=["UPSN", "hook"]), b"{}", content_type="application/json")
    assert hook.status_code == 404

    admin = django_user_model.objects.create_superuser("root")
    client.force_login(admin)
    staff_post = client.post(
        f"{EVENTS}?partner=UPSN",
        json.dumps(ev("s3", "shipment.in_transit", ("tracking", "1Z1"))),
        content_type="application/json",
    )
    assert staff_post.status_code == 403
    assert "inactive" in staff_post.json()["detail"]

    message_process(stored.pk)
    stored.refresh_from_db()
    assert stored.status == InboundMessage.Status.DEAD
    assert "UPSN is inactive" in stored.error
    assert not Milestone.objects.filter(event_id__in=["scan", "s2", "s3"]).exists()


def test_the_relay_scope_names_every_event_kind():
    assert SCOPES["relay"].kinds == {kind.value for kind in EventKind}


def test_an_integration_admin_narrows_a_channels_and_a_tokens_scopes_in_the_admin(world, admin_client):
    channel = Channel.objects.create(partner=world["ERP"], code="orders", format=Channel.Format.JSON)
    page = admin_client.get(reverse("admin:partners_channel_change", args=[channel.pk])).content.decode()
    assert re.search(r'value="invoices"[^>]*checked', page), "a new ERP channel starts with the ERP's scopes"
    assert not re.search(r'value="carried_shipments"[^>]*checked', page)

    form = {
        "partner": world["ERP"].pk,
        "code": "orders",
        "name": "",
        "format": "json",
        "direction": "inbound",
        "priority": "default",
        "active": "on",
        "scopes": ["orders"],
        "mapping_overrides": "{}",
    }
    response = admin_client.post(reverse("admin:partners_channel_change", args=[channel.pk]), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Channel.objects.get(pk=channel.pk).scopes == ["orders"]

    bad = admin_client.post(reverse("admin:partners_channel_change", args=[channel.pk]), {**form, "scopes": ["all"]})
    assert bad.status_code == 200
    assert Channel.objects.get(pk=channel.pk).scopes == ["orders"]

    created = admin_client.post(
        reverse("admin:partners_apitoken_add"),
        {"partner": world["ERP"].pk, "name": "orders only", "scopes": ["orders"]},
    )
    assert created.status_code == 302
    token = ApiToken.objects.get(name="orders only")
    assert token.scopes == ["orders"]
    admin_client.post(reverse("admin:partners_apitoken_change", args=[token.pk]), {"scopes": ["orders", "invoices"]})
    assert ApiToken.objects.get(pk=token.pk).scopes == ["orders", "invoices"]

    defaults = admin_client.post(reverse("admin:partners_apitoken_add"), {"partner": world["UPSN"].pk, "name": "d"})
    assert defaults.status_code == 302
    assert ApiToken.objects.get(name="d").scopes == DEFAULT_SCOPES["carrier"]


def test_an_event_waiting_for_its_shipment_is_retried_only_when_a_new_reference_appears(world):
    """It names a known order but an unknown tracking number: it waits, and neither the apply's
    own after-commit retry nor the periodic one takes it round and round."""
    ours(ev("waits", "shipment.in_transit", ("tracking", "7Z7"), ("order", "SO-1"), hours=3), sender="UPSN")
    assert retry_parked_events().applied == []
    assert list(ParkedEvent.objects.values_list("event_id", flat=True)) == ["waits"]

    refs = (("shipment", "SH-7"), ("tracking", "7Z7"), ("order", "SO-1"))
    ours(ev("sh7", "shipment.manifested", *refs, hours=2, attributes={"carrier": "UPSN"}), sender="DC1")
    assert not ParkedEvent.objects.exists()
    assert Milestone.objects.filter(event_id="waits", shipment__number="SH-7").exists()


def test_an_event_deferred_while_another_worker_manifests_its_shipment_is_applied_once_committed(world):
    """The manifest commits while the scan is being parked: its own retry, run after its commit,
    found nothing parked yet, so the scan's apply retries it after its own commit."""
    with transaction.atomic():
        ours(ev("waits", "shipment.in_transit", ("tracking", "7Z7"), ("order", "SO-1"), hours=3), sender="UPSN")
        assert ParkedEvent.objects.filter(event_id="waits").exists()
        shipment = Shipment.objects.create(number="SH-7", carrier=world["UPSN"], warehouse=world["DC1"])
        Reference.objects.create(kind="tracking", value="7Z7", shipment=shipment)

    assert not ParkedEvent.objects.exists()
    assert Milestone.objects.filter(event_id="waits", shipment=shipment).exists()


def _refusal(response) -> str:
    assert response.status_code == 403
    return response.json()["refused"][0]["reason"]


def test_a_carrier_may_not_report_in_another_carriers_name(world):
    as_other = ev("up-2", "shipment.in_transit", ("tracking", "1Z1"), hours=3, attributes={"carrier": "FDEG"})
    assert _refusal(post(api(world["UPSN"]), as_other)) == (
        "shipment.in_transit: it names carrier FDEG; UPSN may report only the shipments it carries"
    )
    assert not Milestone.objects.filter(event_id="up-2").exists()

    as_itself = ev("up-3", "shipment.in_transit", ("tracking", "1Z1"), hours=3, attributes={"carrier": "UPSN"})
    assert post(api(world["UPSN"]), as_itself).status_code == 202


def test_a_carrier_event_must_name_a_shipment_and_one_its_sender_carries(world):
    no_shipment = ev("up-4", "shipment.delivered", ("order", "SO-1"), hours=4)
    assert _refusal(post(api(world["UPSN"]), no_shipment)) == (
        "shipment.delivered: it names no shipment (shipment number, tracking, BOL, PRO, ASN or container)"
    )

    ours(ev("sh2", "shipment.manifested", ("shipment", "SH-2"), ("order", "SO-1"), hours=2), sender="DC1")
    unclaimed = ev("up-5", "shipment.delivered", ("shipment", "SH-2"), hours=4)
    assert _refusal(post(api(world["UPSN"]), unclaimed)) == (
        "shipment.delivered: the shipment names no carrier yet; UPSN may report only the shipments it carries"
    )


@pytest.mark.parametrize(("margin", "said"), [(3600, "1 hour"), (5400, "1.5 hours"), (7200, "2 hours")])
def test_a_refused_future_event_says_how_far_ahead_is_too_far(world, settings, margin, said):
    settings.EVENT_FUTURE_MARGIN_SECONDS = margin
    ahead = ev("later", "invoice.released", ("order", "SO-1"), occurred_at=timezone.now() + timedelta(days=1))
    assert f"more than {said} ahead of now" in _refusal(post(api(world["ERP"]), ahead))


def test_a_warehouse_may_not_report_work_in_another_warehouses_name(world):
    as_other = ev("dc1-pick", "order.picked", ("order", "SO-1"), hours=3, attributes={"warehouse": "DC2"})
    assert _refusal(post(api(world["DC1"]), as_other)) == (
        "order.picked: it names warehouse DC2; DC1 may report only its own work"
    )

    as_itself = ev("dc1-pick", "order.picked", ("order", "SO-1"), hours=3, attributes={"warehouse": "DC1"})
    assert post(api(world["DC1"]), as_itself).status_code == 202


def test_events_naming_only_a_shipment_are_judged_by_its_warehouse_and_orders(world):
    shop = partner("SHOP", Partner.Kind.SHOP)
    assigned = ev("trk-2", "shipment.tracking_assigned", ("shipment", "SH-1"), ("tracking", "1Z1"), hours=3)

    other_warehouse = post(api(world["DC2"]), assigned)
    assert other_warehouse.status_code == 403
    assert "shipped by another warehouse, not DC2" in other_warehouse.json()["refused"][0]["reason"]

    not_its_order = post(api(shop), {**assigned, "event_id": "trk-3"})
    assert not_its_order.status_code == 403
    assert "not one of SHOP's own orders" in not_its_order.json()["refused"][0]["reason"]

    assert post(api(world["DC1"]), {**assigned, "event_id": "trk-1"}).status_code == 202
