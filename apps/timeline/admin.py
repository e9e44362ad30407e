"""Admin for the timeline: a read-only window on what ``apply_events`` computed.

Orders, shipments and references are projections of the milestones, so nobody adds or
edits them here; superusers may delete. Milestones are append-only: nobody adds, edits or deletes
one; they go only with the order or shipment a superuser deletes.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from apps.timeline.models import (
    Milestone,
    MilestoneReport,
    Order,
    OrderLine,
    ParkedEvent,
    ParkedReference,
    Reference,
    Shipment,
    ShipmentLine,
    ShipmentOrderClaim,
)


class ReadMostlyAdmin(admin.ModelAdmin):
    """Every field read-only, no add or change for anyone; delete for superusers only."""

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        opts = self.model._meta
        fields = [field.name for field in opts.concrete_fields if not field.primary_key]
        fields += [field.name for field in opts.many_to_many]
        return fields + list(self.readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser

    def get_deleted_objects(
        self, objs: Iterable[Model], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """Milestones are never deleted on their own, but go with the order or shipment a superuser deletes."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(Milestone._meta.verbose_name)
        return deleted, counts, perms_needed, protected


class ReadOnlyInline(admin.TabularInline):
    """A read-only table of related rows; ``fields`` are all shown read-only."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return list(self.fields or ())

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def format_references(references: list[dict[str, str]]) -> str:
    """``[{"kind": "po", "value": "PO-7"}, ...]`` as ``po PO-7, ...``."""
    return ", ".join(f"{ref.get('kind')} {ref.get('value')}" for ref in references or [])


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ("line_number", "sku", "quantity", "uom", "unit_price")

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderLine]:
        # Each row is titled with its str(), which names the order.
        return super().get_queryset(request).select_related("order")


class OrderReferenceInline(ReadOnlyInline):
    model = Reference
    fk_name = "order"
    fields = ("kind", "value", "created_at")
    verbose_name_plural = "references"


class ShipmentReferenceInline(OrderReferenceInline):
    fk_name = "shipment"


class MilestoneInline(ReadOnlyInline):
    model = Milestone
    fk_name = "order"
    fields = ("kind", "occurred_at", "source_partner", "source_channel", "reference_list")
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Milestone]:
        return (
            super()
            .get_queryset(request)
            .select_related("source_partner", "source_channel__partner")
            .order_by("occurred_at", "event_id")
        )

    @admin.display(description="references")
    def reference_list(self, milestone: Milestone) -> str:
        return format_references(milestone.references)


class ShipmentMilestoneInline(MilestoneInline):
    fk_name = "shipment"


class ShipmentLineInline(ReadOnlyInline):
    model = ShipmentLine
    fields = ("order", "sku", "quantity", "uom")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ShipmentLine]:
        return super().get_queryset(request).select_related("shipment", "order")


class ShipmentOrderClaimInline(ReadOnlyInline):
    model = ShipmentOrderClaim
    fields = ("kind", "value")
    verbose_name_plural = "orders named but not known yet"


class ParkedReferenceInline(ReadOnlyInline):
    model = ParkedReference
    fields = ("kind", "value")


@admin.register(Order)
class OrderAdmin(ReadMostlyAdmin):
    list_display = ("number", "customer", "stage", "promised_at", "shipped_at", "delivered_at", "invoiced_at")
    list_filter = ("stage", ("customer", admin.RelatedOnlyFieldListFilter), "region")
    list_select_related = ("customer",)
    search_fields = ("number", "references__value")
    date_hierarchy = "ordered_at"
    readonly_fields = ("shipment_numbers",)
    inlines = (OrderLineInline, OrderReferenceInline, MilestoneInline)

    @admin.display(description="shipments")
    def shipment_numbers(self, order: Order) -> str:
        return ", ".join(order.shipments.order_by("number").values_list("number", flat=True))


@admin.register(Shipment)
class ShipmentAdmin(ReadMostlyAdmin):
    list_display = ("number", "order_numbers", "carrier", "tracking_number", "status", "manifested_at", "delivered_at")
    list_filter = (
        "status",
        ("carrier", admin.RelatedOnlyFieldListFilter),
        ("warehouse", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("carrier",)
    search_fields = ("number", "tracking_number", "references__value")
    date_hierarchy = "manifested_at"
    inlines = (ShipmentLineInline, ShipmentReferenceInline, ShipmentOrderClaimInline, ShipmentMilestoneInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Shipment]:
        return super().get_queryset(request).prefetch_related("orders")

    @admin.display(description="orders")
    def order_numbers(self, shipment: Shipment) -> str:
        return ", ".join(sorted(order.number for order in shipment.orders.all()))


@admin.register(Milestone)
class MilestoneAdmin(ReadMostlyAdmin):
    list_display = ("event_id", "kind", "occurred_at", "order", "shipment", "source_partner", "source_channel")
    list_filter = ("kind", ("source_partner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("order", "shipment", "source_partner", "source_channel__partner")
    search_fields = ("event_id",)
    date_hierarchy = "occurred_at"

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(ParkedEvent)
class ParkedEventAdmin(ReadMostlyAdmin):
    list_display = ("event_id", "kind", "occurred_at", "parked_at", "source_partner")
    list_filter = ("kind", ("source_partner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("source_partner",)
    search_fields = ("event_id", "references__value")
    inlines = (ParkedReferenceInline,)


@admin.register(ShipmentOrderClaim)
class ShipmentOrderClaimAdmin(ReadMostlyAdmin):
    list_display = ("shipment", "kind", "value")
    list_filter = ("kind",)
    list_select_related = ("shipment",)
    search_fields = ("value", "shipment__number")


@admin.register(MilestoneReport)
class MilestoneReportAdmin(ReadMostlyAdmin):
    list_display = ("event_id", "milestone", "source_partner", "source_channel", "recorded_at")
    list_filter = (("source_partner", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("milestone", "source_partner", "source_channel__partner")
    search_fields = ("event_id", "milestone__event_id")


@admin.register(Reference)
class ReferenceAdmin(ReadMostlyAdmin):
    list_display = ("kind", "value", "order", "shipment", "created_at")
    list_filter = ("kind",)
    list_select_related = ("order", "shipment")
    search_fields = ("value",)
