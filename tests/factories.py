"""factory-boy factories for every model, with realistic values.

Factories write rows directly, for admin, selector and view tests. Tests of the timeline's
behaviour build canonical events instead (``tests/stories.py``) and go through ``apply_events``.
"""

import base64
import hashlib
from datetime import UTC, timedelta
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q

from apps.billing.models import FreightCharge, Invoice, InvoiceRule, ReturnAuthorization
from apps.exceptions.models import ExceptionCase, ExceptionRule
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.inventory.models import InventoryPosition
from apps.outbound.models import (
    CustomerNotificationSettings,
    Delivery,
    NotificationTemplate,
    OutboundEvent,
    Subscription,
    TrackingLink,
)
from apps.partners.models import ApiToken, Channel, EdiIdentifier, Partner
from apps.timeline.models import (
    Milestone,
    MilestoneReport,
    Order,
    OrderLine,
    OrderStage,
    ParkedEvent,
    ParkedReference,
    Reference,
    Shipment,
    ShipmentLine,
    ShipmentOrderClaim,
    ShipmentStatus,
)

PASSWORD = "correct-horse-battery-staple"


def _recent() -> factory.Faker:
    return factory.Faker("date_time_between", start_date="-30d", end_date="-1d", tzinfo=UTC)


def _event_payload(event_id: str, kind: str, occurred_at: Any, references: list[dict[str, str]]) -> dict[str, Any]:
    """A canonical event (schema version 1) as ``apply_events`` stores it."""
    return {
        "event_id": event_id,
        "kind": kind,
        "schema_version": 1,
        "occurred_at": occurred_at.isoformat(),
        "references": references,
    }


class UserFactory(factory.django.DjangoModelFactory):
    """A user; ``UserFactory(permissions=["timeline.view_order"])`` grants permissions."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def permissions(self, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        if not create or not extracted:
            return
        wanted = Q()
        for name in extracted:
            app_label, codename = name.split(".", 1)
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        self.user_permissions.add(*Permission.objects.filter(wanted))


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"PARTNER{n:04d}")
    name = factory.Faker("company")
    kind = Partner.Kind.CUSTOMER
    region = factory.Iterator(["EU-West", "EU-Central", "NA-East", "NA-West", "APAC"])
    time_zone = factory.Iterator(["Europe/Paris", "Europe/Berlin", "America/New_York", "America/Chicago", "UTC"])
    active = True


class EdiIdentifierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EdiIdentifier

    partner = factory.SubFactory(PartnerFactory)
    qualifier = "ZZ"
    value = factory.Sequence(lambda n: f"EDI{n:08d}")


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel

    partner = factory.SubFactory(PartnerFactory)
    code = factory.Sequence(lambda n: f"feed-{n}")
    name = factory.LazyAttribute(lambda o: f"{o.partner.name} {o.format} feed")
    format = Channel.Format.JSON
    direction = Channel.Direction.INBOUND
    priority = Channel.Priority.DEFAULT
    active = True
    mapping_overrides = factory.LazyFunction(dict)


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order
        django_get_or_create = ("number",)

    number = factory.Sequence(lambda n: f"SO-{n:06d}")
    customer = factory.SubFactory(PartnerFactory, kind=Partner.Kind.CUSTOMER)
    region = factory.LazyAttribute(lambda o: o.customer.region if o.customer else "EU-West")
    ordered_at = _recent()
    promised_at = factory.LazyAttribute(lambda o: o.ordered_at + timedelta(days=5))
    currency = "EUR"
    total_amount = Decimal("250.0000")
    stage = OrderStage.CREATED
    last_event_at = factory.SelfAttribute("ordered_at")


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    line_number = factory.Sequence(lambda n: str(n % 999 + 1))
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    quantity = Decimal("5.000")
    uom = "EA"
    unit_price = Decimal("12.5000")


class ShipmentFactory(factory.django.DjangoModelFactory):
    """A manifested shipment; ``ShipmentFactory(orders=[order])`` links it to orders."""

    class Meta:
        model = Shipment
        django_get_or_create = ("number",)
        skip_postgeneration_save = True

    number = factory.Sequence(lambda n: f"SH-{n:06d}")
    carrier = factory.SubFactory(PartnerFactory, kind=Partner.Kind.CARRIER)
    warehouse = factory.SubFactory(PartnerFactory, kind=Partner.Kind.WAREHOUSE)
    tracking_number = factory.Sequence(lambda n: f"1Z999AA1{n:010d}")
    status = ShipmentStatus.MANIFESTED
    manifested_at = _recent()
    last_carrier_event_at = factory.SelfAttribute("manifested_at")

    @factory.post_generation
    def orders(self, create: bool, extracted: list[Order] | None, **kwargs: Any) -> None:
        if create and extracted:
            self.orders.add(*extracted)


class ShipmentLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ShipmentLine

    shipment = factory.SubFactory(ShipmentFactory)
    order = factory.SubFactory(OrderFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    quantity = Decimal("5.000")
    uom = "EA"


class ReferenceFactory(factory.django.DjangoModelFactory):
    """A reference to an order (a PO by default), or to a shipment when ``shipment`` is given."""

    class Meta:
        model = Reference

    shipment = None
    order = factory.Maybe("shipment", yes_declaration=None, no_declaration=factory.SubFactory(OrderFactory))
    kind = factory.Maybe("shipment", yes_declaration="tracking", no_declaration="po")
    value = factory.Sequence(lambda n: f"REF{n:08d}")


class ShipmentOrderClaimFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ShipmentOrderClaim

    shipment = factory.SubFactory(ShipmentFactory)
    kind = "order"
    value = factory.Sequence(lambda n: f"SO-LATE-{n:06d}")


class MilestoneFactory(factory.django.DjangoModelFactory):
    """An applied event on an order (``order.created``), or on a shipment when ``shipment`` is given."""

    class Meta:
        model = Milestone

    event_id = factory.Sequence(lambda n: f"evt-{n:08d}")
    shipment = None
    order = factory.Maybe("shipment", yes_declaration=None, no_declaration=factory.SubFactory(OrderFactory))
    kind = factory.Maybe("shipment", yes_declaration="shipment.in_transit", no_declaration="order.created")
    occurred_at = _recent()
    source_partner = factory.SubFactory(PartnerFactory, kind=Partner.Kind.ERP)
    source_channel = factory.SubFactory(ChannelFactory, partner=factory.SelfAttribute("..source_partner"))
    references = factory.LazyAttribute(
        lambda o: (
            [{"kind": "shipment", "value": o.shipment.number}]
            if o.shipment
            else [{"kind": "order", "value": o.order.number}]
        )
    )
    payload = factory.LazyAttribute(lambda o: _event_payload(o.event_id, o.kind, o.occurred_at, o.references))


class MilestoneReportFactory(factory.django.DjangoModelFactory):
    """A second source reporting a milestone already on the timeline."""

    class Meta:
        model = MilestoneReport

    milestone = factory.SubFactory(MilestoneFactory)
    event_id = factory.Sequence(lambda n: f"report-{n:08d}")
    source_partner = factory.SubFactory(PartnerFactory, kind=Partner.Kind.CARRIER)
    source_channel = factory.SubFactory(ChannelFactory, partner=factory.SelfAttribute("..source_partner"))


class ParkedEventFactory(factory.django.DjangoModelFactory):
    """A carrier event for a tracking number nobody knows yet, with its parked reference."""

    class Meta:
        model = ParkedEvent
        skip_postgeneration_save = True

    class Params:
        tracking = factory.Sequence(lambda n: f"1ZUNKNOWN{n:09d}")

    event_id = factory.Sequence(lambda n: f"parked-{n:08d}")
    kind = "shipment.in_transit"
    occurred_at = _recent()
    source_partner = factory.SubFactory(PartnerFactory, kind=Partner.Kind.CARRIER)
    payload = factory.LazyAttribute(
        lambda o: _event_payload(o.event_id, o.kind, o.occurred_at, [{"kind": "tracking", "value": o.tracking}])
    )
    reference = factory.RelatedFactory(
        "tests.factories.ParkedReferenceFactory",
        factory_related_name="parked_event",
        kind="tracking",
        value=factory.SelfAttribute("..tracking"),
    )


class ParkedReferenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ParkedReference

    parked_event = factory.SubFactory(ParkedEventFactory, reference=None)
    kind = "tracking"
    value = factory.Sequence(lambda n: f"1ZPARKED{n:010d}")


class InventoryPositionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InventoryPosition

    warehouse = factory.SubFactory(PartnerFactory, kind=Partner.Kind.WAREHOUSE)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    quantity = Decimal("120.000")
    uom = "EA"
    as_of = _recent()


class FreightChargeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FreightCharge

    number = factory.Sequence(lambda n: f"FB-{n:07d}")
    carrier = factory.SubFactory(PartnerFactory, kind=Partner.Kind.CARRIER)
    shipment = factory.SubFactory(ShipmentFactory, carrier=factory.SelfAttribute("..carrier"))
    amount = Decimal("184.5000")
    quoted_amount = Decimal("180.0000")
    currency = "EUR"
    status = FreightCharge.Status.POSTED
    posted_at = _recent()


class InvoiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invoice

    number = factory.Sequence(lambda n: f"INV-{n:07d}")
    order = factory.SubFactory(OrderFactory)
    amount = factory.SelfAttribute("order.total_amount")
    currency = factory.SelfAttribute("order.currency")
    status = Invoice.Status.GENERATED
    generated_at = _recent()


class ReturnAuthorizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReturnAuthorization

    number = factory.Sequence(lambda n: f"RMA-{n:07d}")
    order = factory.SubFactory(OrderFactory)
    status = ReturnAuthorization.Status.AUTHORIZED
    authorized_at = _recent()
    lines = factory.LazyFunction(lambda: [{"sku": "SKU-00001", "quantity": "1", "uom": "EA"}])


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """A token's stored half; use ``apps.partners.services.api_token_create`` for a usable one."""

    class Meta:
        model = ApiToken

    partner = factory.SubFactory(PartnerFactory, kind=Partner.Kind.ERP)
    name = "ERP production"
    prefix = factory.Sequence(lambda n: f"{n:08x}")
    hashed = factory.Faker("sha256")


class InboundMessageFactory(factory.django.DjangoModelFactory):
    """A canonical JSON message as a partner's API would send it, not yet processed."""

    class Meta:
        model = InboundMessage

    partner = factory.SubFactory(PartnerFactory, kind=Partner.Kind.ERP)
    source = InboundMessage.Source.API
    format = "json"
    body = factory.Sequence(lambda n: f'{{"event_id": "m-{n}"}}'.encode())
    size = factory.LazyAttribute(lambda o: len(o.body))
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.body).hexdigest())


class OutboundMessageFactory(factory.django.DjangoModelFactory):
    """A 997 acknowledging an inbound X12 message."""

    class Meta:
        model = OutboundMessage

    inbound = factory.SubFactory(InboundMessageFactory, format="x12")
    partner = factory.SelfAttribute("inbound.partner")
    format = "x12"
    kind = "997"
    control_number = factory.Sequence(lambda n: f"{n:09d}")
    ack_status = "accepted"
    body = "ISA*00*...~"


class InvoiceRuleFactory(factory.django.DjangoModelFactory):
    """A customer invoiced on proof of delivery, once the order is complete."""

    class Meta:
        model = InvoiceRule

    customer = factory.SubFactory(PartnerFactory, kind=Partner.Kind.CUSTOMER)
    trigger = InvoiceRule.Trigger.PROOF_OF_DELIVERY
    granularity = InvoiceRule.Granularity.WHEN_COMPLETE
    quantity_tolerance = Decimal("0.02")


class ExceptionRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExceptionRule
        django_get_or_create = ("code",)

    code = "delivered_not_invoiced"
    title = "Delivered, not invoiced"
    queue = "finance"
    severity = "high"


class ExceptionCaseFactory(factory.django.DjangoModelFactory):
    """An open case about an order, opened a few hours ago and due tomorrow."""

    class Meta:
        model = ExceptionCase

    rule = factory.SubFactory(ExceptionRuleFactory)
    queue = factory.SelfAttribute("rule.queue")
    severity = factory.SelfAttribute("rule.severity")
    order = factory.SubFactory(OrderFactory)
    subject_type = "order"
    subject_id = factory.SelfAttribute("order.id")
    customer = factory.SelfAttribute("order.customer")
    summary = factory.LazyAttribute(lambda o: f"{o.order.number}: {o.rule.title}")
    opened_at = factory.Faker("date_time_between", start_date="-3d", end_date="-1h", tzinfo=UTC)
    due_at = factory.LazyAttribute(lambda o: o.opened_at + timedelta(days=1))


class SubscriptionFactory(factory.django.DjangoModelFactory):
    """An ERP receiving every shipment event as canonical JSON."""

    class Meta:
        model = Subscription
        skip_postgeneration_save = True

    partner = factory.SubFactory(PartnerFactory, kind=Partner.Kind.ERP)
    name = factory.Sequence(lambda n: f"Receiver {n}")
    target_url = "http://127.0.0.1:9/hooks/events"
    event_kinds = factory.LazyFunction(lambda: ["shipment.*"])
    secret = factory.Sequence(lambda n: "whsec_" + base64.b64encode(f"subscription-secret-{n:08}".encode()).decode())

    @factory.post_generation
    def customers(self, create: bool, extracted: list | None, **kwargs: Any) -> None:
        if create and extracted:
            self.customers.set(extracted)


class OutboundEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OutboundEvent

    event_id = factory.Sequence(lambda n: f"published-{n}")
    kind = "shipment.delivered"
    occurred_at = factory.Faker("date_time_between", start_date="-3d", end_date="-1h", tzinfo=UTC)
    payload = factory.LazyAttribute(lambda o: {"event_id": o.event_id, "kind": o.kind, "schema_version": 1})


class DeliveryFactory(factory.django.DjangoModelFactory):
    """A delivery waiting to be sent."""

    class Meta:
        model = Delivery

    subscription = factory.SubFactory(SubscriptionFactory)
    event = factory.SubFactory(OutboundEventFactory)
    kind = factory.SelfAttribute("event.kind")
    next_attempt_at = factory.Faker("date_time_between", start_date="-1h", end_date="now", tzinfo=UTC)


class NotificationTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationTemplate

    milestone = "delivered"
    subject = "Order {{ order_number }} delivered"
    body = "Hello {{ customer_name }}, your order {{ order_number }} was delivered. Track it: {{ tracking_url }}"


class CustomerNotificationSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerNotificationSettings

    customer = factory.SubFactory(PartnerFactory, kind=Partner.Kind.CUSTOMER)
    recipients = "logistics@customer.example, buyer@customer.example"
    milestones = factory.LazyFunction(lambda: ["shipped", "delivered"])


class TrackingLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrackingLink

    order = factory.SubFactory(OrderFactory)
    expires_at = factory.Faker("date_time_between", start_date="+1d", end_date="+30d", tzinfo=UTC)
