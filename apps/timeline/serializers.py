"""Output shapes of the order timeline, shared by ``GET /api/v1/orders/`` and ``manage.py timeline``.

Decimals are strings; times are ISO 8601 with their UTC offset, in the active time zone.
"""

from datetime import datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from apps.billing.visibility import ALL_AMOUNTS, Amounts, is_money_attribute
from apps.timeline.selectors import OrderMatch, OrderTimeline


class OffsetDateTimeField(serializers.DateTimeField):
    """ISO 8601 that always spells the offset (``+00:00``, never ``Z``); null when not (yet) known,
    unless ``allow_null=False``."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value: datetime | None) -> str | None:
        return self.enforce_timezone(value).isoformat() if value else None


class ReferenceSerializer(serializers.Serializer):
    kind = serializers.CharField()
    value = serializers.CharField()


class OrderStateSerializer(serializers.Serializer):
    """An order's identity and projection; reads ``.order`` of a timeline or of a search match."""

    id = serializers.IntegerField(source="order.id")
    number = serializers.CharField(source="order.number")
    customer = serializers.CharField(source="order.customer.code", default=None, allow_null=True)
    stage = serializers.CharField(source="order.stage")
    promised_at = OffsetDateTimeField(source="order.promised_at")
    ordered_at = OffsetDateTimeField(source="order.ordered_at")
    released_at = OffsetDateTimeField(source="order.released_at")
    allocated_at = OffsetDateTimeField(source="order.allocated_at")
    picked_at = OffsetDateTimeField(source="order.picked_at")
    packed_at = OffsetDateTimeField(source="order.packed_at")
    shipped_at = OffsetDateTimeField(source="order.shipped_at")
    delivered_at = OffsetDateTimeField(source="order.delivered_at")
    pod_at = OffsetDateTimeField(source="order.pod_at")
    invoiced_at = OffsetDateTimeField(source="order.invoiced_at")
    posted_at = OffsetDateTimeField(source="order.posted_at")
    cancelled_at = OffsetDateTimeField(source="order.cancelled_at")
    last_event_at = OffsetDateTimeField(source="order.last_event_at")


class OrderSerializer(OrderStateSerializer):
    """The order header of a timeline: amounts and what is late."""

    customer_name = serializers.CharField(source="order.customer.name", default=None, allow_null=True)
    region = serializers.CharField(source="order.region")
    currency = serializers.CharField(source="order.currency")
    total_amount = serializers.DecimalField(source="order.total_amount", max_digits=16, decimal_places=4)
    invoiced_amount = serializers.DecimalField(
        max_digits=16, decimal_places=4, allow_null=True, help_text="Null when your role may not see invoice amounts."
    )
    late = serializers.BooleanField()
    at_risk = serializers.BooleanField()


class OrderLineSerializer(serializers.Serializer):
    line_number = serializers.CharField()
    sku = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=14, decimal_places=3)
    uom = serializers.CharField()
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=4)


class ShipmentSerializer(serializers.Serializer):
    """A shipment of the order: read from a ``TimelineShipment``."""

    number = serializers.CharField(source="shipment.number")
    carrier = serializers.CharField(source="shipment.carrier.code", default=None, allow_null=True)
    warehouse = serializers.CharField(source="shipment.warehouse.code", default=None, allow_null=True)
    tracking_number = serializers.CharField(source="shipment.tracking_number")
    status = serializers.CharField(source="shipment.status")
    estimated_delivery_at = OffsetDateTimeField(source="shipment.estimated_delivery_at")
    at_risk = serializers.BooleanField()
    manifested_at = OffsetDateTimeField(source="shipment.manifested_at")
    picked_up_at = OffsetDateTimeField(source="shipment.picked_up_at")
    delivered_at = OffsetDateTimeField(source="shipment.delivered_at")
    pod_at = OffsetDateTimeField(source="shipment.pod_at")
    delayed_at = OffsetDateTimeField(source="shipment.delayed_at")
    delay_reason = serializers.CharField(source="shipment.delay_reason")
    references = ReferenceSerializer(source="shipment.references.all", many=True)


class SourceSerializer(serializers.Serializer):
    partner = serializers.CharField(source="source_partner.code", default=None, allow_null=True)
    channel = serializers.CharField(source="source_channel.code", default=None, allow_null=True)
    message = serializers.IntegerField(source="source_message_id", allow_null=True)


class ReportSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    source = SourceSerializer(source="*")


class MilestoneSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    kind = serializers.CharField()
    occurred_at = OffsetDateTimeField(allow_null=False)
    recorded_at = OffsetDateTimeField(allow_null=False)
    shipment = serializers.CharField(source="shipment.number", default=None, allow_null=True)
    source = SourceSerializer(source="*")
    also_reported_by = ReportSerializer(source="other_reports.all", many=True)
    references = ReferenceSerializer(many=True)
    location = serializers.JSONField()
    amount = serializers.DecimalField(
        max_digits=16,
        decimal_places=4,
        allow_null=True,
        help_text="Null on freight and invoice events when your role may not see their amounts.",
    )
    currency = serializers.CharField()
    estimated_delivery_at = OffsetDateTimeField()
    attributes = serializers.JSONField(source="payload.attributes", default=dict)


class FreightChargeSerializer(serializers.Serializer):
    number = serializers.CharField()
    shipment = serializers.CharField(source="shipment.number")
    carrier = serializers.CharField(source="carrier.code", default=None, allow_null=True)
    status = serializers.CharField()
    amount = serializers.DecimalField(
        max_digits=16, decimal_places=4, allow_null=True, help_text="Null when your role may not see freight amounts."
    )
    quoted_amount = serializers.DecimalField(max_digits=16, decimal_places=4, allow_null=True)
    currency = serializers.CharField()
    posted_at = OffsetDateTimeField()
    validated_at = OffsetDateTimeField()
    disputed_at = OffsetDateTimeField()
    settled_at = OffsetDateTimeField()


class InvoiceSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.CharField()
    amount = serializers.DecimalField(
        max_digits=16, decimal_places=4, allow_null=True, help_text="Null when your role may not see invoice amounts."
    )
    currency = serializers.CharField()
    hold_reason = serializers.CharField()
    generated_at = OffsetDateTimeField()
    held_at = OffsetDateTimeField()
    released_at = OffsetDateTimeField()
    posted_at = OffsetDateTimeField()


class ReturnSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.CharField()
    authorized_at = OffsetDateTimeField()
    received_at = OffsetDateTimeField()
    lines = serializers.JSONField()


class OrderTimelineSerializer(serializers.Serializer):
    """The full timeline of one order: the body of ``GET /api/v1/orders/<pk>/`` and ``timeline --json``."""

    order = OrderSerializer(source="*")
    lines = OrderLineSerializer(many=True)
    shipments = ShipmentSerializer(many=True)
    milestones = MilestoneSerializer(many=True)
    freight_charges = FreightChargeSerializer(many=True)
    invoices = InvoiceSerializer(many=True)
    returns = ReturnSerializer(many=True)


def timeline_data(timeline: OrderTimeline, *, amounts: Amounts = ALL_AMOUNTS) -> dict:
    """The timeline document, with the freight and invoice amounts ``amounts`` does not show nulled."""
    data = OrderTimelineSerializer(timeline).data
    if not amounts.invoice:
        data["order"]["invoiced_amount"] = None
        for invoice in data["invoices"]:
            invoice["amount"] = None
    if not amounts.freight:
        for charge in data["freight_charges"]:
            charge["amount"] = charge["quoted_amount"] = None
    hidden = amounts.hidden_kinds
    for milestone in data["milestones"]:
        if milestone["kind"] in hidden:
            milestone["amount"] = None
            milestone["attributes"] = {
                name: value for name, value in milestone["attributes"].items() if not is_money_attribute(name)
            }
    return data


class MatchSerializer(serializers.Serializer):
    kind = serializers.CharField()
    value = serializers.CharField()
    exact = serializers.BooleanField()


class OrderQuerySerializer(serializers.Serializer):
    """Input of ``GET /api/v1/orders/``."""

    ref = serializers.CharField(max_length=100, help_text="Any reference: order, PO, shipment, tracking, BOL, ...")


class OrderMatchSerializer(OrderStateSerializer):
    """One order a reference resolved to, how it matched and all its references."""

    url = serializers.SerializerMethodField()
    matched_by = MatchSerializer(source="matches", many=True)
    references = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, match: OrderMatch) -> str:
        return reverse("api-order-detail", args=[match.order.id], request=self.context.get("request"))

    @extend_schema_field(ReferenceSerializer(many=True))
    def get_references(self, match: OrderMatch) -> list[dict[str, str]]:
        """The order's references and those of its shipments (prefetched by the caller)."""
        order = match.order
        own = [(ref.kind, ref.value) for ref in order.references.all()]
        shipped = [(ref.kind, ref.value) for shipment in order.shipments.all() for ref in shipment.references.all()]
        return [{"kind": kind, "value": value} for kind, value in sorted(set(own + shipped))]
