"""Admin for outbound: subscriptions (configured here), deliveries and endpoints (read and replayed)."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html

from apps.outbound import admin_customers  # noqa: F401 - registers the customer e-mail and tracking link admins
from apps.outbound.forms import MAX_ATTEMPTS_LIMIT, TIMEOUT_LIMIT_SECONDS, TextListField
from apps.outbound.models import Delivery, DeliveryAttempt, Endpoint, OutboundEvent, Subscription
from apps.outbound.services import (
    deliveries_replay,
    endpoint_close,
    endpoint_of,
    outbox_folder,
    subscription_secret_rotate,
)

REPLAY = "outbound.replay_delivery"
SIGNATURE_NOTE = (
    "Receivers verify each delivery with this secret: X-Signature is sha256= followed by the hex "
    'HMAC-SHA256 of X-Timestamp + "." + the body. Give it to the partner over a safe channel; '
    "rotate it (action on the list) if it leaked."
)


class SubscriptionForm(forms.ModelForm):
    """Event kinds and regions edited as text; the model's own rules report on the fields."""

    target_url = forms.URLField(
        label="Target URL",
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=Subscription._meta.get_field("target_url").help_text,
    )
    event_kinds = TextListField(
        required=False,
        help_text='One per line or separated by commas: kinds such as "shipment.delivered", "shipment.*" or "*".',
    )
    regions = TextListField(
        required=False, help_text="Only orders of these regions, one per line or comma separated. Blank: every region."
    )
    max_attempts = forms.IntegerField(min_value=1, max_value=MAX_ATTEMPTS_LIMIT, initial=8)
    timeout_seconds = forms.IntegerField(min_value=1, max_value=TIMEOUT_LIMIT_SECONDS, initial=10)

    class Meta:
        model = Subscription
        fields = (
            "partner",
            "name",
            "channel",
            "target_url",
            "event_kinds",
            "format",
            "acknowledgments",
            "active",
            "customers",
            "regions",
            "ordered",
            "max_attempts",
            "timeout_seconds",
        )


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ("partner", "name", "target", "kinds", "format", "active", "circuit")
    list_display_links = ("name",)
    list_filter = ("active", "format", "acknowledgments", "ordered", "endpoint__state", "partner")
    list_select_related = ("partner", "channel", "endpoint")
    search_fields = ("name", "partner__code", "partner__name", "target_url")
    autocomplete_fields = ("partner", "channel")
    filter_horizontal = ("customers",)
    readonly_fields = ("signing_secret", "circuit_panel", "created_at", "updated_at")
    actions = ("rotate_secret",)
    fieldsets = (
        (None, {"fields": ("partner", "name", "active")}),
        ("Where", {"fields": ("channel", "target_url", "signing_secret")}),
        ("What", {"fields": ("event_kinds", "format", "acknowledgments", "customers", "regions")}),
        ("How", {"fields": ("ordered", "max_attempts", "timeout_seconds", "circuit_panel")}),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    def save_model(self, request: HttpRequest, obj: Subscription, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        endpoint_of(obj)

    @admin.display(description="target")
    def target(self, subscription: Subscription) -> str:
        if subscription.target_url:
            return subscription.target_url
        return f"outbox folder {outbox_folder(subscription)}"

    @admin.display(description="event kinds")
    def kinds(self, subscription: Subscription) -> str:
        kinds = list(subscription.event_kinds)
        if subscription.acknowledgments:
            kinds.append("997")
        return ", ".join(kinds) or "—"

    @admin.display(description="circuit", ordering="endpoint__state")
    def circuit(self, subscription: Subscription) -> str:
        endpoint = subscription.endpoint
        return endpoint.get_state_display() if endpoint else "Closed (nothing sent yet)"

    @admin.display(description="secret")
    def signing_secret(self, subscription: Subscription) -> str:
        if subscription.pk is None:
            return "Generated when you save; shown here afterwards."
        return format_html("<code>{}</code><p class='help'>{}</p>", subscription.secret, SIGNATURE_NOTE)

    @admin.display(description="circuit breaker")
    def circuit_panel(self, subscription: Subscription) -> str:
        endpoint = subscription.endpoint if subscription.pk else None
        if endpoint is None:
            return "Closed: nothing sent yet."
        return format_html(
            "{} · {} consecutive failure(s) · {} · <a href='{}'>delivery log</a>",
            endpoint.get_state_display(),
            endpoint.failures,
            endpoint.key,
            reverse("subscription-detail", args=[subscription.pk]),
        )

    @admin.action(description="Rotate the signing secret of selected subscriptions", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        subscriptions = list(queryset)
        for subscription in subscriptions:
            subscription_secret_rotate(subscription=subscription)
        self.message_user(
            request,
            f"{len(subscriptions)} secret(s) rotated. Give each partner its new one: the old one no longer verifies.",
            messages.SUCCESS,
        )


class DeliveryAttemptInline(admin.StackedInline):
    model = DeliveryAttempt
    fields = (
        "number",
        "started_at",
        "outcome",
        "status_code",
        "duration_ms",
        "error",
        "request_headers",
        "request_body",
        "response_body",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "kind", "subscription", "attempts", "last_status_code", "created_at")
    list_filter = ("status", "subscription__format", "subscription__partner")
    list_select_related = ("subscription__partner",)
    search_fields = ("=id", "kind", "event__event_id", "order__number", "subscription__name")
    date_hierarchy = "created_at"
    actions = ("replay",)
    readonly_fields = [f.name for f in Delivery._meta.concrete_fields] + ["log"]
    inlines = (DeliveryAttemptInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).select_related("subscription__partner", "event", "order")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="delivery log")
    def log(self, delivery: Delivery) -> str:
        return format_html(
            "<a href='{}'>Attempts as sent and answered</a>", reverse("delivery-detail", args=[delivery.pk])
        )

    @admin.action(description="Replay dead letters", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        selected = queryset.count()
        count = deliveries_replay(deliveries=queryset, actor=request.user)
        note = f" ({selected - count} not dead, left as they were)" if selected > count else ""
        self.message_user(request, f"{count} delivery(ies) queued to send again{note}.", messages.SUCCESS)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REPLAY)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """Where deliveries go, with the circuit breaker shared by the subscriptions sending there."""

    list_display = ("key", "state", "failures", "opened_at", "retry_at", "short_error", "updated_at")
    list_filter = ("state",)
    search_fields = ("key", "last_error")
    readonly_fields = [f.name for f in Endpoint._meta.concrete_fields]
    actions = ("close_breaker",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="last error")
    def short_error(self, endpoint: Endpoint) -> str:
        return truncatechars(endpoint.last_error, 80)

    @admin.action(description="Close the breaker and send what waits for it", permissions=["replay"])
    def close_breaker(self, request: HttpRequest, queryset: QuerySet[Endpoint]) -> None:
        released = sum(endpoint_close(endpoint_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(
            request, f"Breaker closed; {released} waiting delivery(ies) are being sent.", messages.SUCCESS
        )

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REPLAY)


@admin.register(OutboundEvent)
class OutboundEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "kind", "occurred_at", "order", "published_at")
    list_filter = ("kind",)
    list_select_related = ("order",)
    search_fields = ("event_id", "order__number")
    date_hierarchy = "published_at"
    readonly_fields = [f.name for f in OutboundEvent._meta.concrete_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
