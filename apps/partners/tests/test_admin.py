from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import FreightCharge, Invoice, InvoiceRule, ReturnAuthorization
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.inventory.models import InventoryPosition, LedgerEntry, StockFeed, StockTolerance
from apps.partners.models import ApiToken, Channel, ChannelMappingVersion, Partner
from apps.partners.services import channel_mapping_save
from apps.timeline.events import EventSource, parse_events
from apps.timeline.models import (
    Milestone,
    MilestoneReport,
    Order,
    ParkedEvent,
    Reference,
    Shipment,
    ShipmentOrderClaim,
)
from apps.timeline.services import apply_events
from tests import factories

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"partners", "timeline", "inventory", "billing", "ingest"}


def partner_with(children: int) -> Partner:
    partner = factories.PartnerFactory(kind=Partner.Kind.CARRIER)
    factories.EdiIdentifierFactory.create_batch(children, partner=partner)
    factories.ChannelFactory.create_batch(children, partner=partner)
    return partner


def order_with(children: int) -> Order:
    order = factories.OrderFactory()
    factories.OrderLineFactory.create_batch(children, order=order)
    factories.ReferenceFactory.create_batch(children, order=order)
    factories.MilestoneFactory.create_batch(children, order=order)
    factories.ShipmentFactory.create_batch(2, orders=[order])
    return order


def shipment_with(children: int) -> Shipment:
    orders = factories.OrderFactory.create_batch(children)
    shipment = factories.ShipmentFactory(orders=orders)
    for order in orders:
        factories.ShipmentLineFactory(shipment=shipment, order=order)
    factories.ReferenceFactory.create_batch(children, shipment=shipment)
    factories.ShipmentOrderClaimFactory.create_batch(children, shipment=shipment)
    factories.MilestoneFactory.create_batch(children, shipment=shipment)
    return shipment


def parked_event_with(children: int) -> ParkedEvent:
    parked = factories.ParkedEventFactory()
    factories.ParkedReferenceFactory.create_batch(children - 1, parked_event=parked)
    return parked


def mapping_version_with(changes: int) -> ChannelMappingVersion:
    codes = {f"C{n}": "shipment.delivered" for n in range(changes)}
    return channel_mapping_save(
        channel=factories.ChannelFactory(format=Channel.Format.X12), mapping={"status_codes": codes}, author=None
    )


def ledger_entry() -> LedgerEntry:
    warehouse = factories.PartnerFactory(kind=Partner.Kind.WAREHOUSE)
    return LedgerEntry.objects.create(
        warehouse=warehouse,
        sku="SKU-1",
        uom="EA",
        view="on_hand",
        kind="movement",
        quantity=-3,
        occurred_at=timezone.now(),
        event_id="adj-1",
        line=0,
        source_partner=warehouse,
    )


def milestone(_: int) -> Milestone:
    return factories.MilestoneFactory(shipment=factories.ShipmentFactory(orders=[factories.OrderFactory()]))


BUILDERS: dict[type[Model], Callable[[int], Model]] = {
    Partner: partner_with,
    Channel: lambda _: factories.ChannelFactory(mapping_overrides={"status_codes": {"X1": "shipment.delivered"}}),
    Order: order_with,
    Shipment: shipment_with,
    Milestone: milestone,
    ParkedEvent: parked_event_with,
    ShipmentOrderClaim: lambda _: factories.ShipmentOrderClaimFactory(),
    Reference: lambda _: factories.ReferenceFactory(),
    InventoryPosition: lambda _: factories.InventoryPositionFactory(),
    LedgerEntry: lambda _: ledger_entry(),
    StockFeed: lambda _: StockFeed.objects.create(warehouse=factories.PartnerFactory(kind=Partner.Kind.WAREHOUSE)),
    StockTolerance: lambda _: StockTolerance.objects.create(sku="SKU-1", units=2),
    FreightCharge: lambda _: factories.FreightChargeFactory(),
    Invoice: lambda _: factories.InvoiceFactory(),
    ReturnAuthorization: lambda _: factories.ReturnAuthorizationFactory(),
    MilestoneReport: lambda _: factories.MilestoneReportFactory(),
    ApiToken: lambda _: factories.ApiTokenFactory(),
    InboundMessage: lambda _: factories.InboundMessageFactory(),
    OutboundMessage: lambda _: factories.OutboundMessageFactory(),
    InvoiceRule: lambda _: factories.InvoiceRuleFactory(),
    ChannelMappingVersion: mapping_version_with,
}
MODELS = list(BUILDERS)
# Models whose change page lists related rows inline.
WITH_INLINES = [Partner, Order, Shipment, ParkedEvent]


def changelist_url(model: type[Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_url(obj: Model) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def queries_for(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200
    return len(context.captured_queries)


def test_every_project_model_in_the_admin_is_covered() -> None:
    registered = {model for model in admin.site._registry if model._meta.app_label in PROJECT_APPS}

    assert registered == set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_and_change_page_render(admin_client: Client, model: type[Model]) -> None:
    obj = BUILDERS[model](3)

    changelist = admin_client.get(changelist_url(model))
    change = admin_client.get(change_url(obj))

    assert changelist.status_code == 200
    assert list(changelist.context["cl"].result_list) == [obj]
    assert change.status_code == 200
    assert change.context["original"] == obj


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_queries_do_not_grow_with_rows(admin_client: Client, model: type[Model]) -> None:
    url = changelist_url(model)
    for _ in range(3):
        BUILDERS[model](2)
    admin_client.get(url)
    with_3 = queries_for(admin_client, url)

    for _ in range(27):
        BUILDERS[model](2)
    with_30 = queries_for(admin_client, url)

    assert with_30 == with_3


@pytest.mark.parametrize("model", WITH_INLINES, ids=lambda m: m.__name__)
def test_change_page_queries_do_not_grow_with_inline_rows(admin_client: Client, model: type[Model]) -> None:
    small, large = BUILDERS[model](3), BUILDERS[model](30)
    admin_client.get(change_url(small))

    assert queries_for(admin_client, change_url(large)) == queries_for(admin_client, change_url(small))


def add_url(model: type[Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")


def delete_url(obj: Model) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=[obj.pk])


@pytest.mark.parametrize("model", [Order, Shipment, Milestone, Reference, InventoryPosition, Invoice])
def test_projections_cannot_be_added_or_changed_even_by_a_superuser(admin_client: Client, model: type[Model]) -> None:
    obj = BUILDERS[model](1)
    change_page = admin_client.get(change_url(obj))

    assert admin_client.get(add_url(model)).status_code == 403
    assert admin_client.post(change_url(obj), {"number": "HACKED"}).status_code == 403
    assert change_page.context["has_change_permission"] is False
    assert change_page.context["adminform"].form.fields == {}


def test_order_change_page_shows_every_projection_field_read_only(admin_client: Client) -> None:
    order = order_with(2)

    readonly = set(admin_client.get(change_url(order)).context["adminform"].readonly_fields)

    assert {"stage", "shipped_at", "delivered_at", "invoiced_at", "customer", "shipment_numbers"} <= readonly


def test_milestones_are_append_only(admin_client: Client) -> None:
    event = milestone(1)

    assert admin_client.get(delete_url(event)).status_code == 403
    assert admin_client.get(add_url(Milestone)).status_code == 403
    assert admin_client.get(changelist_url(Milestone)).context["action_form"] is None


def test_only_superusers_delete_orders_and_their_timeline_goes_with_them(admin_client: Client, client: Client) -> None:
    order = order_with(1)
    staff = factories.UserFactory(
        is_staff=True, permissions=["timeline.view_order", "timeline.change_order", "timeline.delete_order"]
    )
    client.force_login(staff)

    assert client.get(change_url(order)).status_code == 200
    assert client.get(delete_url(order)).status_code == 403
    assert admin_client.get(delete_url(order)).status_code == 200
    assert admin_client.post(delete_url(order), {"post": "yes"}).status_code == 302
    assert not Order.objects.filter(pk=order.pk).exists()
    assert not Milestone.objects.filter(order_id=order.pk).exists()


def test_staff_with_view_permission_reads_orders(client: Client) -> None:
    order = order_with(2)
    client.force_login(factories.UserFactory(is_staff=True, permissions=["timeline.view_order"]))

    assert client.get(changelist_url(Order)).status_code == 200
    assert client.get(change_url(order)).status_code == 200
    assert client.get(changelist_url(Partner)).status_code == 403


def test_order_inline_lists_milestones_in_time_order_with_their_source(admin_client: Client) -> None:
    order = factories.OrderFactory(number="SO-77")
    late = factories.MilestoneFactory(order=order, kind="order.picked")
    early = factories.MilestoneFactory(
        order=order, occurred_at=late.occurred_at - timedelta(hours=3), kind="order.created"
    )

    response = admin_client.get(change_url(order))

    inline = next(formset for formset in response.context["inline_admin_formsets"] if formset.opts.model is Milestone)
    assert [form.original for form in inline] == [early, late]
    assert "order SO-77" in response.content.decode()
    assert early.source_partner.name in response.content.decode()


@pytest.mark.parametrize("term", ["ACMEUS01", "acmeus01", "ZZ:ACMEUS01", "zz:acmeus01"])
def test_partner_search_finds_a_partner_by_edi_identifier(admin_client: Client, term: str) -> None:
    acme = factories.EdiIdentifierFactory(qualifier="ZZ", value="ACMEUS01").partner
    factories.EdiIdentifierFactory(qualifier="01", value="ACMEUS01-OTHER")
    factories.EdiIdentifierFactory(qualifier="ZZ", value="GLOBEX")

    response = admin_client.get(changelist_url(Partner), {"q": term})

    found = list(response.context["cl"].result_list)
    assert acme in found
    assert len(found) == (2 if ":" not in term else 1)


def test_partner_search_by_code_and_name(admin_client: Client) -> None:
    acme = factories.PartnerFactory(code="ACME", name="Acme Freight")
    factories.PartnerFactory(code="GLOBEX", name="Globex")

    by_code = admin_client.get(changelist_url(Partner), {"q": "acme"}).context["cl"].result_list
    by_name = admin_client.get(changelist_url(Partner), {"q": "freight"}).context["cl"].result_list

    assert list(by_code) == list(by_name) == [acme]


def channel_form(partner: Partner, mapping: str) -> dict[str, str]:
    return {
        "partner": str(partner.pk),
        "code": "edi-856",
        "name": "ASN feed",
        "format": Channel.Format.X12,
        "direction": Channel.Direction.INBOUND,
        "priority": Channel.Priority.CRITICAL,
        "active": "on",
        "mapping_overrides": mapping,
    }


@pytest.mark.parametrize(
    ("mapping", "error"),
    [
        ("[1, 2]", "Enter a JSON object"),
        ('"X1"', "Enter a JSON object"),
        ("42", "Enter a JSON object"),
        ('{"status_codes": ', "Enter a valid JSON"),
    ],
)
def test_channel_admin_rejects_mapping_that_is_not_a_json_object(
    admin_client: Client, mapping: str, error: str
) -> None:
    partner = factories.PartnerFactory()

    response = admin_client.post(add_url(Channel), channel_form(partner, mapping))

    assert response.status_code == 200
    assert error in " ".join(response.context["adminform"].form.errors["mapping_overrides"])
    assert not Channel.objects.exists()


@pytest.mark.parametrize(
    ("mapping", "saved"),
    [
        ('{"status_codes": {"X1": "shipment.delivered"}}', {"status_codes": {"X1": "shipment.delivered"}}),
        ("", {}),
    ],
)
def test_channel_admin_saves_a_json_object(admin_client: Client, mapping: str, saved: dict) -> None:
    partner = factories.PartnerFactory()

    response = admin_client.post(add_url(Channel), channel_form(partner, mapping))

    assert response.status_code == 302
    channel = Channel.objects.get(partner=partner, code="edi-856")
    assert channel.mapping_overrides == saved
    assert channel.priority == Channel.Priority.CRITICAL


def test_channel_admin_shows_mapping_indented_in_monospace(admin_client: Client) -> None:
    channel = factories.ChannelFactory(mapping_overrides={"status_codes": {"X1": "shipment.delivered"}})

    html = admin_client.get(change_url(channel)).content.decode()

    assert "font-family: monospace" in html
    assert "{\n  &quot;status_codes&quot;: {\n    &quot;X1&quot;: &quot;shipment.delivered&quot;" in html


def test_pages_render_for_a_timeline_built_by_apply_events(admin_client: Client) -> None:
    factories.PartnerFactory(code="UPSN", kind=Partner.Kind.CARRIER)
    factories.ChannelFactory(partner=Partner.objects.get(code="UPSN"), code="hook", format=Channel.Format.WEBHOOK)
    order_refs = [{"kind": "order", "value": "SO-1"}, {"kind": "po", "value": "PO-1"}]
    shipment_refs = [{"kind": "shipment", "value": "SH-1"}, {"kind": "tracking", "value": "1Z1"}]
    apply_events(
        parse_events(
            [
                {
                    "event_id": "created",
                    "kind": "order.created",
                    "occurred_at": "2026-11-02T08:00:00+00:00",
                    "references": order_refs,
                    "lines": [{"sku": "SKU-1", "quantity": "2", "unit_price": "9.50"}],
                },
                {
                    "event_id": "manifested",
                    "kind": "shipment.manifested",
                    "occurred_at": "2026-11-02T12:00:00+00:00",
                    "references": [*shipment_refs, order_refs[0]],
                    "lines": [{"sku": "SKU-1", "quantity": "2"}],
                },
                {
                    "event_id": "invoiced",
                    "kind": "invoice.generated",
                    "occurred_at": "2026-11-03T08:00:00+00:00",
                    "references": [{"kind": "invoice", "value": "INV-1"}, order_refs[0]],
                    "amount": "19.00",
                    "currency": "EUR",
                },
            ],
            # A channel an Integration Admin widened to the whole story, so one source shows everywhere.
            source=EventSource(partner="UPSN", channel="hook", scopes=("orders", "invoices", "fulfilment")),
        )
    )
    order = Order.objects.get(number="SO-1")

    order_page = admin_client.get(change_url(order)).content.decode()
    shipment_page = admin_client.get(change_url(Shipment.objects.get(number="SH-1"))).content.decode()

    assert "order SO-1, po PO-1" in order_page
    assert "UPSN/hook" in order_page
    assert "SH-1" in order_page
    assert "SO-1" in shipment_page
    for obj in [*Milestone.objects.all(), *Reference.objects.all(), *Invoice.objects.all()]:
        assert admin_client.get(change_url(obj)).status_code == 200
