from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.utils.html import format_html

from apps.ingest import mapping_admin  # noqa: F401 - registers the channel mapping pages
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.ingest.services import messages_replay

BODY_PREVIEW_CHARS = 20_000


class AcknowledgmentInline(admin.TabularInline):
    model = OutboundMessage
    fk_name = "inbound"
    fields = ("kind", "control_number", "ack_status", "status", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "received_at",
        "partner",
        "channel",
        "source",
        "format",
        "mapping_version",
        "status",
        "events_count",
        "applied_count",
        "short_error",
    )
    list_filter = ("status", "format", "source", "partner")
    search_fields = ("=id", "filename", "sha256", "idempotency_key", "error")
    list_select_related = ("partner", "channel__partner")
    date_hierarchy = "received_at"
    actions = ("replay",)
    exclude = ("body",)
    readonly_fields = [f.name for f in InboundMessage._meta.concrete_fields if f.name != "body"] + ["raw_body"]
    inlines = (AcknowledgmentInline,)

    class Media:
        css = {"all": ["css/admin-ingest.css"]}  # no inline styles under the CSP

    def get_queryset(self, request: HttpRequest) -> QuerySet[InboundMessage]:
        queryset = super().get_queryset(request)
        # The list never needs the raw bytes; the change page reads them for the preview.
        return queryset if request.resolver_match.url_name.endswith("_change") else queryset.defer("body")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="error")
    def short_error(self, message: InboundMessage) -> str:
        return truncatechars(message.error, 80)

    @admin.display(description="body")
    def raw_body(self, message: InboundMessage) -> str:
        text = message.text(BODY_PREVIEW_CHARS)
        more = " …" if message.size > BODY_PREVIEW_CHARS else ""
        return format_html('<pre class="raw-body">{}{}</pre>', text, more)

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[InboundMessage]) -> None:
        count = messages_replay(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} message(s) queued again.", messages.SUCCESS)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ingest.replay_inboundmessage")


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "partner", "kind", "control_number", "ack_status", "status", "inbound")
    list_filter = ("kind", "ack_status", "status", "partner")
    search_fields = ("control_number",)
    list_select_related = ("partner", "inbound")
    readonly_fields = [f.name for f in OutboundMessage._meta.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
