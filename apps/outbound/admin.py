"""Admin for outbound: subscriptions (configured here), deliveries and endpoints (read and replayed)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from apps.outbound import admin_customers  # noqa: F401 - registers the customer e-mail and tracking link admins
from apps.outbound.forms import MAX_ATTEMPTS_LIMIT, TIMEOUT_LIMIT_SECONDS, TextListField
from apps.outbound.models import MAX_BATCH_SIZE, Delivery, DeliveryAttempt, Endpoint, OutboundEvent, Subscription
from apps.outbound.services import (
    deliveries_replay,
    endpoint_close,
    endpoint_concurrency_set,
    endpoint_of,
    outbox_folder,
    subscription_secret_rotate,
)
from apps.partners import standard_webhooks
from apps.partners.credentials import secret_mask

REPLAY = "outbound.replay_delivery"
SIGNATURE_NOTE = (
    "Receivers verify each delivery with this secret as Standard Webhooks specify (webhook-id, "
    "webhook-timestamp, webhook-signature), with any Standard Webhooks library. It is shown once, when "
    "generated; rotate it if it leaked. After a rotation, webhook-signature carries a signature with the old "
    "secret too for a grace period, so the receiver can switch when it likes; X-Signature, when kept, "
    "changes at once."
)
# A secret typed by staff must be at least this long; generated ones are much longer.
SECRET_MIN_LENGTH = 16


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
    batch_size = forms.IntegerField(
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        required=False,
        help_text=Subscription._meta.get_field("batch_size").help_text + " Blank: 1.",
    )
    max_attempts = forms.IntegerField(min_value=1, max_value=MAX_ATTEMPTS_LIMIT, initial=8)
    timeout_seconds = forms.IntegerField(min_value=1, max_value=TIMEOUT_LIMIT_SECONDS, initial=10)
    rotate_secret = forms.BooleanField(
        label="Generate a new signing secret", required=False, help_text="Shown once, after saving."
    )
    new_secret = forms.CharField(
        label="Or set the secret the receiver gave you",
        required=False,
        min_length=SECRET_MIN_LENGTH,
        max_length=Subscription._meta.get_field("secret").max_length,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Replaces the current secret from the next delivery. Blank: keep it.",
    )

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
            "legacy_signature",
            "batch_size",
            "max_attempts",
            "timeout_seconds",
        )

    def clean_batch_size(self) -> int:
        return self.cleaned_data.get("batch_size") or 1

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("rotate_secret") and data.get("new_secret"):
            self.add_error("new_secret", "Either generate a secret or set one, not both.")
        elif data.get("new_secret"):
            try:
                standard_webhooks.signing_key(data["new_secret"])
            except ValueError as exc:
                self.add_error("new_secret", str(exc))
        return data


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """The signing secret is write-only: shown once in a message when generated, masked afterwards."""

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
        ("Where", {"fields": ("channel", "target_url")}),
        ("Signing secret", {"fields": ("signing_secret", "rotate_secret", "new_secret", "legacy_signature")}),
        ("What", {"fields": ("event_kinds", "format", "acknowledgments", "customers", "regions")}),
        ("How", {"fields": ("ordered", "batch_size", "max_attempts", "timeout_seconds", "circuit_panel")}),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    @method_decorator(sensitive_post_parameters("new_secret"))
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Typed secrets stay out of error reports."""
        return super().changeform_view(request, *args, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Subscription | None = None) -> Any:
        """A new subscription gets a generated secret unless one is typed; viewers get no inputs."""
        if obj is None:
            hidden = {"rotate_secret"}
        elif not self.has_change_permission(request, obj):
            hidden = {"rotate_secret", "new_secret"}
        else:
            return self.fieldsets
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in hidden]})
            for name, options in self.fieldsets
        ]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup.split(LOOKUP_SEP)[0] == "secret":
            return False
        return super().lookup_allowed(lookup, value, request)

    @method_decorator(sensitive_variables())
    def save_model(self, request: HttpRequest, obj: Subscription, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        endpoint_of(obj)
        typed = form.cleaned_data.get("new_secret") or ""
        if typed or form.cleaned_data.get("rotate_secret"):
            secret = subscription_secret_rotate(subscription=obj, secret=typed)
            if not typed:
                self._show_once(request, obj, secret)
        elif not change:
            self._show_once(request, obj, obj.secret)

    @admin.display(description="target")
    def target(self, subscription: Subscription) -> str:
        if subscription.target_url:
            return subscription.target_url
        return f"outbox folder {outbox_folder(subscription)}"

    @admin.display(description="event kinds")
    def kinds(self, subscription: Subscription) -> str:
        kinds = list(subscription.event_kinds)
        if subscription.acknowledgments:
            kinds.append("CONTRL" if subscription.format == Subscription.Format.EDIFACT else "997")
        return ", ".join(kinds) or "—"

    @admin.display(description="circuit", ordering="endpoint__state")
    def circuit(self, subscription: Subscription) -> str:
        endpoint = subscription.endpoint
        return endpoint.get_state_display() if endpoint else "Closed (nothing sent yet)"

    @admin.display(description="current secret")
    def signing_secret(self, subscription: Subscription) -> str:
        if subscription.pk is None:
            return "Generated when you save and shown once."
        status = secret_mask(subscription.secret)
        if subscription.secret_rotated_at:
            status += f", set {date_format(timezone.localtime(subscription.secret_rotated_at), 'DATETIME_FORMAT')}"
        return format_html("<code>{}</code><p class='help'>{}</p>", status, SIGNATURE_NOTE)

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
    @method_decorator(sensitive_variables())
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        subscriptions = list(queryset.select_related("partner"))
        for subscription in subscriptions:
            secret = subscription_secret_rotate(subscription=subscription)
            self.log_change(request, subscription, "Rotated the signing secret.")
            self._show_once(request, subscription, secret)
        self.message_user(request, f"{len(subscriptions)} secret(s) rotated.", messages.SUCCESS)

    def _show_once(self, request: HttpRequest, subscription: Subscription, secret: str) -> None:
        self.message_user(
            request,
            f"New signing secret of {subscription}: {secret} Copy it now and give it to the receiver over a safe "
            "channel: it will not be shown again. It signs from the next delivery.",
            messages.WARNING,
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

    list_display = ("key", "state", "max_in_flight", "failures", "opened_at", "retry_at", "short_error", "updated_at")
    list_filter = ("state",)
    search_fields = ("key", "last_error")
    fields = [f.name for f in Endpoint._meta.concrete_fields if f.name != "id"]
    readonly_fields = [name for name in fields if name != "max_in_flight"]
    actions = ("close_breaker",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Endpoint, form: forms.ModelForm, change: bool) -> None:
        """Only the concurrency is written: the breaker's fields belong to the senders."""
        endpoint_concurrency_set(endpoint_id=obj.pk, max_in_flight=obj.max_in_flight)

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
