from collections.abc import Iterable
from typing import Any, NamedTuple

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.partners.models import Channel, Partner
from apps.timeline.events import EventKind, ReferenceKind
from controltower.indexes import NullsLastIndex


class OrderStage(models.TextChoices):
    CREATED = "created", "Created"
    RELEASED = "released", "Released"
    ALLOCATED = "allocated", "Allocated"
    PICKED = "picked", "Picked"
    PACKED = "packed", "Packed"
    SHIPPED = "shipped", "Shipped"
    PARTIALLY_DELIVERED = "partially_delivered", "Partially delivered"
    DELIVERED = "delivered", "Delivered"
    INVOICED = "invoiced", "Invoiced"
    POSTED = "posted", "Invoice posted"
    CANCELLED = "cancelled", "Cancelled"


class ShipmentStatus(models.TextChoices):
    MANIFESTED = "manifested", "Manifested"
    TRACKING_ASSIGNED = "tracking_assigned", "Tracking assigned"
    PICKED_UP = "picked_up", "Picked up"
    IN_TRANSIT = "in_transit", "In transit"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    DELIVERY_ATTEMPTED = "delivery_attempted", "Delivery attempted"
    DELIVERED = "delivered", "Delivered"
    POD_RECEIVED = "pod_received", "Proof of delivery"


class Order(models.Model):
    """An order and its projection: the stage reached and when each milestone was first reached."""

    number = models.CharField(max_length=100, unique=True)
    customer = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="orders")
    region = models.CharField(max_length=60, blank=True)
    promised_at = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    total_amount = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)

    stage = models.CharField(max_length=24, choices=OrderStage.choices, default=OrderStage.CREATED)
    ordered_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    allocated_at = models.DateTimeField(null=True, blank=True)
    picked_at = models.DateTimeField(null=True, blank=True)
    packed_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="When the last shipment was delivered.")
    pod_at = models.DateTimeField(null=True, blank=True)
    invoiced_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-ordered_at", "-id"]
        indexes = [
            # The order list, newest first (nulls last, as it sorts), and the same within a stage.
            NullsLastIndex(F("ordered_at").desc(nulls_last=True), F("id").desc(), name="order_recent_first"),
            NullsLastIndex(
                F("stage"), F("ordered_at").desc(nulls_last=True), F("id").desc(), name="order_stage_recent_first"
            ),
            models.Index(fields=["customer", "stage"]),
            models.Index(fields=["promised_at"], condition=Q(delivered_at__isnull=True), name="order_open_by_promise"),
            models.Index(
                fields=["delivered_at"], condition=Q(invoiced_at__isnull=True), name="order_delivered_not_invoiced"
            ),
            models.Index(fields=["released_at"], condition=Q(picked_at__isnull=True), name="order_released_not_picked"),
            models.Index(fields=["picked_at"], condition=Q(shipped_at__isnull=True), name="order_picked_not_shipped"),
        ]

    def __str__(self) -> str:
        return self.number


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_number = models.CharField(max_length=20, blank=True)
    sku = models.CharField(max_length=100)
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    uom = models.CharField(max_length=10, default="EA")
    unit_price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)

    class Meta:
        ordering = ["order", "id"]
        constraints = [models.UniqueConstraint(fields=["order", "sku"], name="unique_order_line_sku")]

    def __str__(self) -> str:
        return f"{self.order.number} {self.sku} x {self.quantity}"


class Shipment(models.Model):
    """A physical shipment. It may carry lines of several orders; an order may ship in several."""

    number = models.CharField(max_length=100, unique=True)
    orders = models.ManyToManyField(Order, related_name="shipments", blank=True)
    carrier = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="carried_shipments"
    )
    warehouse = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="shipped_shipments"
    )
    tracking_number = models.CharField(max_length=100, blank=True, db_index=True)

    status = models.CharField(max_length=24, choices=ShipmentStatus.choices, default=ShipmentStatus.MANIFESTED)
    manifested_at = models.DateTimeField(null=True, blank=True)
    tracking_assigned_at = models.DateTimeField(null=True, blank=True)
    picked_up_at = models.DateTimeField(null=True, blank=True)
    in_transit_at = models.DateTimeField(null=True, blank=True)
    out_for_delivery_at = models.DateTimeField(null=True, blank=True)
    delivery_attempted_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    pod_at = models.DateTimeField(null=True, blank=True)
    damaged_at = models.DateTimeField(null=True, blank=True)
    refused_at = models.DateTimeField(null=True, blank=True)
    delayed_at = models.DateTimeField(null=True, blank=True)
    delay_reason = models.CharField(max_length=200, blank=True)
    estimated_delivery_at = models.DateTimeField(null=True, blank=True)
    last_carrier_event_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-manifested_at", "-id"]
        indexes = [
            models.Index(fields=["status"]),
            models.Index(fields=["manifested_at"], condition=Q(tracking_number=""), name="shipment_without_tracking"),
            models.Index(
                fields=["last_carrier_event_at"],
                condition=Q(delivered_at__isnull=True),
                name="shipment_open_by_last_event",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class ShipmentLine(models.Model):
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="shipment_lines")
    sku = models.CharField(max_length=100)
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    uom = models.CharField(max_length=10, default="EA")

    class Meta:
        ordering = ["shipment", "id"]
        constraints = [
            models.UniqueConstraint(fields=["shipment", "order", "sku"], name="unique_shipment_line"),
        ]

    def __str__(self) -> str:
        return f"{self.shipment.number} {self.sku} x {self.quantity}"


class Reference(models.Model):
    """A typed identifier of one order or one shipment.

    The same value may name several subjects: several sales orders under one customer PO, several
    shipments under one master bill of lading.
    """

    kind = models.CharField(max_length=12, choices=[(k.value, k.value) for k in ReferenceKind])
    value = models.CharField(max_length=100)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="references")
    shipment = models.ForeignKey(Shipment, null=True, blank=True, on_delete=models.CASCADE, related_name="references")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "value", "order"], condition=Q(order__isnull=False), name="unique_order_reference"
            ),
            models.UniqueConstraint(
                fields=["kind", "value", "shipment"],
                condition=Q(shipment__isnull=False),
                name="unique_shipment_reference",
            ),
            models.CheckConstraint(
                condition=Q(order__isnull=False, shipment__isnull=True) | Q(order__isnull=True, shipment__isnull=False),
                name="reference_has_one_subject",
            ),
        ]
        indexes = [
            # Prefix search ("starts with") on PostgreSQL needs the pattern operator class.
            models.Index(fields=["value"], name="reference_value_prefix", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


class ShipmentOrderClaim(models.Model):
    """An order reference a shipment event named (SO, PO, ...).

    The shipment is linked to every order that carries the reference, including orders that
    appear later, so links never depend on which arrived first.
    """

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="order_claims")
    kind = models.CharField(max_length=12)
    value = models.CharField(max_length=100, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["shipment", "kind", "value"], name="unique_shipment_order_claim"),
        ]

    def __str__(self) -> str:
        return f"{self.shipment_id} carries {self.kind} {self.value}"


def per_source(name: str) -> models.UniqueConstraint:
    """Event ids are unique per source partner (our own events, without one, share a space).
    The event id leads the index, so a lookup by event id alone uses it too."""
    return models.UniqueConstraint(
        F("event_id"), Coalesce("source_partner", Value(0)), name=f"unique_{name}_event_per_source"
    )


class Identity(NamedTuple):
    """A stored event's identity as the database holds it (``EventKey`` names the partner by code)."""

    event_id: str
    source_partner_id: int


def identity(row: Any) -> Identity:
    """The identity of a milestone, report, parked or published event (anything with both fields)."""
    return Identity(row.event_id, row.source_partner_id or 0)


def pks_by_identity(model: type[models.Model], event_ids: Iterable[str]) -> dict[Identity, int]:
    """Primary keys of the stored events (of ``model``) with these ids, by identity."""
    rows = model.objects.filter(event_id__any=set(event_ids)).values_list("event_id", "source_partner_id", "pk")
    return {Identity(event_id, partner_id or 0): pk for event_id, partner_id, pk in rows}


class Milestone(models.Model):
    """One applied canonical event: the append-only timeline. Never updated, never deleted."""

    event_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=40, choices=[(k.value, k.value) for k in EventKind])
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="milestones")
    shipment = models.ForeignKey(Shipment, null=True, blank=True, on_delete=models.CASCADE, related_name="milestones")
    source_partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="milestones"
    )
    source_channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="milestones"
    )
    source_message_id = models.BigIntegerField(null=True, blank=True)
    references = models.JSONField(default=list)
    lines = models.JSONField(default=list, blank=True)
    location = models.JSONField(null=True, blank=True)
    amount = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    estimated_delivery_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(help_text="The canonical event as applied, without its lines (see lines).")

    class Meta:
        ordering = ["occurred_at", "event_id"]
        constraints = [per_source("milestone")]
        indexes = [
            models.Index(fields=["order", "occurred_at"]),
            models.Index(fields=["shipment", "occurred_at"]),
            models.Index(fields=["kind", "occurred_at"]),
            models.Index(fields=["source_partner", "recorded_at"]),
            models.Index(fields=["source_message_id"], name="milestone_source_message"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class MilestoneReport(models.Model):
    """Another source reporting a milestone already on the timeline (same subject, kind and time).

    A carrier's 214 and its webhook often say the same thing: the timeline shows it once and
    lists every source. The report with the smallest event id is the milestone itself.
    """

    milestone = models.ForeignKey(Milestone, on_delete=models.CASCADE, related_name="other_reports")
    event_id = models.CharField(max_length=200)
    source_partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="milestone_reports"
    )
    source_channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="milestone_reports"
    )
    source_message_id = models.BigIntegerField(null=True, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["event_id"]
        constraints = [per_source("report")]
        indexes = [models.Index(fields=["source_message_id"], name="report_source_message")]

    def __str__(self) -> str:
        return f"{self.event_id} also reports {self.milestone_id}"


class ParkedEvent(models.Model):
    """An event whose references match no order or shipment yet; applied when one appears."""

    event_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    # Given when an event comes back from a retry still unmatched: it keeps its first parking time.
    parked_at = models.DateTimeField(default=timezone.now, db_index=True)
    source_partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="parked_events"
    )
    payload = models.JSONField()

    class Meta:
        ordering = ["parked_at"]
        constraints = [per_source("parked")]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_id} (parked)"


class ParkedReference(models.Model):
    parked_event = models.ForeignKey(ParkedEvent, on_delete=models.CASCADE, related_name="references")
    kind = models.CharField(max_length=12)
    value = models.CharField(max_length=100, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["parked_event", "kind", "value"], name="unique_parked_reference"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"
