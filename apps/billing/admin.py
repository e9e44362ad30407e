"""Admin for billing: freight charges, invoices and returns, projected from milestones (read-only)."""

from django.contrib import admin

from apps.billing.models import FreightCharge, Invoice, InvoiceRule, ReturnAuthorization
from apps.timeline.admin import ReadMostlyAdmin


@admin.register(FreightCharge)
class FreightChargeAdmin(ReadMostlyAdmin):
    list_display = (
        "number",
        "carrier",
        "shipment",
        "amount",
        "quoted_amount",
        "currency",
        "status",
        "posted_at",
        "settled_at",
    )
    list_filter = ("status", ("carrier", admin.RelatedOnlyFieldListFilter), "currency")
    list_select_related = ("carrier", "shipment")
    search_fields = ("number", "shipment__number")
    date_hierarchy = "posted_at"


@admin.register(Invoice)
class InvoiceAdmin(ReadMostlyAdmin):
    list_display = ("number", "order", "amount", "currency", "status", "hold_reason", "generated_at", "posted_at")
    list_filter = ("status", ("order__customer", admin.RelatedOnlyFieldListFilter), "currency")
    list_select_related = ("order",)
    search_fields = ("number", "order__number")
    date_hierarchy = "generated_at"


@admin.register(ReturnAuthorization)
class ReturnAuthorizationAdmin(ReadMostlyAdmin):
    list_display = ("number", "order", "status", "authorized_at", "received_at")
    list_filter = ("status",)
    list_select_related = ("order",)
    search_fields = ("number", "order__number")
    date_hierarchy = "authorized_at"


@admin.register(InvoiceRule)
class InvoiceRuleAdmin(admin.ModelAdmin):
    """Per customer: when its orders are invoiced, per shipment or when complete, and the tolerance."""

    list_display = ("customer", "trigger", "granularity", "quantity_tolerance", "enabled")
    list_filter = ("trigger", "granularity", "enabled")
    list_select_related = ("customer",)
    search_fields = ("customer__code", "customer__name")
    autocomplete_fields = ("customer",)
