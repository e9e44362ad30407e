"""Admin for exceptions: rules are configuration (fully editable); cases are worked in the queues."""

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from apps.exceptions.models import CaseEvent, ExceptionCase, ExceptionRule


@admin.register(ExceptionRule)
class ExceptionRuleAdmin(admin.ModelAdmin):
    list_display = ["code", "title", "queue", "severity", "threshold", "sla", "enabled"]
    list_filter = ["queue", "severity", "enabled"]
    search_fields = ["code", "title", "description"]
    list_editable = ["enabled"]
    raw_id_fields = ["scope_customer", "scope_partner"]
    fieldsets = [
        (None, {"fields": ["code", "title", "description", "queue", "severity", "enabled"]}),
        ("Timing", {"fields": ["threshold", "sla", "tolerance"]}),
        ("Scope", {"fields": ["scope_customer", "scope_partner", "scope_region"]}),
    ]


class CaseEventInline(admin.TabularInline):
    """The case's history, read-only: it is an audit trail."""

    model = CaseEvent
    fields = ["at", "action", "actor", "reason_code", "note"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[CaseEvent]:
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(ExceptionCase)
class ExceptionCaseAdmin(admin.ModelAdmin):
    """Read-mostly: cases are opened by detection and worked in the queues, which keep the history."""

    list_display = ["id", "rule", "queue", "status", "severity", "summary", "order", "customer", "partner",
                    "amount_at_risk", "opened_at", "due_at", "assignee"]  # fmt: skip
    list_select_related = ["rule", "order", "customer", "partner", "assignee"]
    list_filter = ["queue", "status", "severity", "rule"]
    search_fields = ["summary", "order__number", "shipment__number"]
    date_hierarchy = "opened_at"
    inlines = [CaseEventInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [field.name for field in self.model._meta.concrete_fields if not field.primary_key]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.is_superuser
