"""Admin for partners and channels: where integration admins configure who sends what."""

import json
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from apps.partners.credentials import (
    channel_poll_headers_set,
    channel_webhook_secret_set,
    poll_headers_masked,
    poll_headers_parse,
    secret_mask,
)
from apps.partners.mapping import mapping_problems
from apps.partners.models import ApiToken, Channel, EdiIdentifier, Partner
from apps.partners.scopes import SCOPE_CHOICES
from apps.partners.services import api_token_create, api_token_revoke, api_token_scopes_set, channel_mapping_save

# A secret typed by staff must be at least this long; generated ones are much longer.
SECRET_MIN_LENGTH = 16
# Channel fields no admin URL may filter on: ``?webhook_secret__startswith=a`` would reveal a
# secret one character at a time.
CHANNEL_SECRET_FIELDS = frozenset({"webhook_secret", "webhook_secret_previous", "poll_headers"})
# Write-only inputs, left out of the page for people who may only view channels.
CHANNEL_SECRET_INPUTS = ("rotate_webhook_secret", "new_webhook_secret", "new_poll_headers", "clear_poll_headers")
MAPPING_PERMISSION = "partners.change_channel_mapping"


class JSONObjectField(forms.JSONField):
    """A JSON object edited as indented text; an empty box means ``{}``."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, cls=self.encoder)

    def to_python(self, value: Any) -> Any:
        data = super().to_python(value)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValidationError(
                'Enter a JSON object, such as {"status_codes": {"X1": "shipment.delivered"}}.', code="not_an_object"
            )
        return data


def _when(moment: datetime) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, not even the one just typed into a form with errors."""

    def format_value(self, value: Any) -> None:
        return None


class ScopesField(forms.MultipleChoiceField):
    """Scopes as checkboxes. Left empty on a new channel or token, the partner kind's apply."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        kwargs.pop("max_length", None)
        super().__init__(choices=SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple, **kwargs)
        self.required = False
        self.help_text = (
            "What it may send, about whose orders and shipments (see the README's scope table). Left empty "
            "when created: the partner kind's defaults. Emptied later: it may send nothing."
        )


class ScopedForm(forms.ModelForm):
    def clean_scopes(self) -> list[str] | None:
        chosen = self.cleaned_data.get("scopes") or []
        return chosen if chosen or self.instance.pk else None


class ChannelForm(ScopedForm):
    """Secrets are inputs only: the current ones are never rendered, not even masked, here."""

    rotate_webhook_secret = forms.BooleanField(
        label="Generate a new webhook secret",
        required=False,
        help_text="Shown once, after saving. The current secret keeps verifying for the grace period.",
    )
    new_webhook_secret = forms.CharField(
        label="Or set the secret the partner gave you",
        required=False,
        min_length=SECRET_MIN_LENGTH,
        max_length=Channel._meta.get_field("webhook_secret").max_length,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Replaces the current secret, which keeps verifying for the grace period. Blank: keep it.",
    )
    new_poll_headers = forms.CharField(
        label="Set the poll headers",
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 3, "cols": 100, "spellcheck": "false", "autocomplete": "off"}),
        help_text="One 'Name: value' a line, such as 'Authorization: Bearer <carrier key>'; replaces every "
        "current header. Blank: keep them.",
    )
    clear_poll_headers = forms.BooleanField(label="Remove the poll headers", required=False)

    class Meta:
        model = Channel
        fields = (
            "partner",
            "code",
            "name",
            "format",
            "direction",
            "priority",
            "active",
            "expected_cadence",
            "signature_scheme",
            "customer",
            "scopes",
            "mapping_overrides",
        )
        field_classes = {"mapping_overrides": JSONObjectField, "scopes": ScopesField}
        widgets = {
            "mapping_overrides": forms.Textarea(
                attrs={"rows": 14, "cols": 100, "spellcheck": "false", "style": "font-family: monospace"}
            )
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "signature_scheme" in self.fields:
            self.fields["signature_scheme"].required = False  # left out: ours

    def clean_signature_scheme(self) -> str:
        return self.cleaned_data.get("signature_scheme") or Channel.SignatureScheme.OURS

    def clean_mapping_overrides(self) -> dict[str, Any]:
        mapping = self.cleaned_data["mapping_overrides"]
        if "headers" in mapping:
            raise ValidationError(
                'Headers go in "Set the poll headers", where they are kept write-only; remove "headers" here.',
                code="headers_in_mapping",
            )
        return mapping

    def clean_new_poll_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data["new_poll_headers"]
        if not text.strip():
            return None
        try:
            return poll_headers_parse(text)
        except ValueError as exc:
            raise ValidationError(str(exc), code="bad_header") from exc

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("rotate_webhook_secret") and data.get("new_webhook_secret"):
            self.add_error("new_webhook_secret", "Either generate a secret or set one, not both.")
        if data.get("clear_poll_headers") and data.get("new_poll_headers"):
            self.add_error("new_poll_headers", "Either set new headers or remove them, not both.")
        mapping, channel_format = data.get("mapping_overrides"), data.get("format")
        if mapping is not None and channel_format and {"mapping_overrides", "format"} & set(self.changed_data):
            for problem in mapping_problems(channel_format, mapping):
                self.add_error("mapping_overrides", problem)
        return data


class EdiIdentifierInline(admin.TabularInline):
    model = EdiIdentifier
    extra = 0


class ChannelInline(admin.TabularInline):
    model = Channel
    fk_name = "partner"
    fields = ("code", "name", "format", "direction", "priority", "active")
    extra = 0
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Channel]:
        # Each row is titled with its str(), which names the partner.
        return super().get_queryset(request).select_related("partner")


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind", "region", "time_zone", "active")
    list_filter = ("kind", "region", "active")
    search_fields = ("code", "name", "edi_identifiers__value")
    readonly_fields = ("created_at", "updated_at")
    inlines = (EdiIdentifierInline, ChannelInline)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Partner], search_term: str
    ) -> tuple[QuerySet[Partner], bool]:
        """``ZZ:ACMEUS`` finds the partner owning that EDI identifier; anything else searches as usual."""
        term = search_term.strip()
        qualifier, colon, value = term.partition(":")
        if colon and qualifier and value and len(term.split()) == 1:
            found = queryset.filter(edi_identifiers__qualifier__iexact=qualifier, edi_identifiers__value__iexact=value)
            return found, False
        return super().get_search_results(request, queryset, search_term)


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    """Webhook secrets and poll headers are write-only: set or generated here, shown once in a
    message after saving, masked on every page afterwards, and never usable as a list filter."""

    form = ChannelForm
    list_display = ("code", "partner", "name", "format", "direction", "priority", "expected_cadence", "active")
    list_filter = ("format", "direction", "active", "priority", "partner__kind")
    list_select_related = ("partner",)
    search_fields = ("code", "name", "partner__code", "partner__name")
    autocomplete_fields = ("partner", "customer")
    readonly_fields = ("webhook_secret_status", "poll_headers_status", "mapping_history", "created_at", "updated_at")
    actions = ("rotate_webhook_secret",)
    fieldsets = (
        (None, {"fields": (*ChannelForm.Meta.fields, "mapping_history")}),
        ("Webhook secret", {"fields": ("webhook_secret_status", "rotate_webhook_secret", "new_webhook_secret")}),
        ("Tracking pull headers", {"fields": ("poll_headers_status", "new_poll_headers", "clear_poll_headers")}),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    @method_decorator(sensitive_post_parameters("new_webhook_secret", "new_poll_headers"))
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Typed secrets stay out of error reports."""
        return super().changeform_view(request, *args, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Channel | None = None) -> Any:
        if obj is None or self.has_change_permission(request, obj):
            return self.fieldsets
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in CHANNEL_SECRET_INPUTS]})
            for name, options in self.fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Channel | None = None) -> Any:
        """Only people who may change mappings edit them; the others see them."""
        fields = super().get_readonly_fields(request, obj)
        if not request.user.has_perm(MAPPING_PERMISSION):
            return (*fields, "mapping_overrides")
        return fields

    @admin.display(description="mapping history")
    def mapping_history(self, channel: Channel) -> str:
        if channel.pk is None:
            return "Saving the channel with a mapping records it as version 1."
        try:
            url = reverse("admin:partners_channelmappingversion_channel", args=[channel.pk])
        except NoReverseMatch:
            return f"Version {channel.mapping_version}"
        return format_html(
            'Version {} &middot; <a href="{}">edit with a sample preview, history and audit</a>',
            channel.mapping_version,
            url,
        )

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup.split(LOOKUP_SEP)[0] in CHANNEL_SECRET_FIELDS:
            return False
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description="current secret")
    def webhook_secret_status(self, channel: Channel) -> str:
        if not channel.webhook_secret:
            return "Not set: webhooks to this channel are refused. A webhook channel gets one when saved."
        status = secret_mask(channel.webhook_secret)
        if channel.webhook_secret_rotated_at:
            status += f", set {_when(channel.webhook_secret_rotated_at)}"
        until = channel.webhook_secret_previous_until
        if channel.webhook_secret_previous and until and until > timezone.now():
            previous = secret_mask(channel.webhook_secret_previous)
            status += f"; the previous one ({previous}) verifies until {_when(until)}"
        return status

    @admin.display(description="current headers")
    def poll_headers_status(self, channel: Channel) -> str:
        return poll_headers_masked(channel.poll_headers)

    @method_decorator(sensitive_variables())
    def save_model(self, request: HttpRequest, obj: Channel, form: forms.ModelForm, change: bool) -> None:
        """A changed mapping is saved as the channel's next mapping version, with its author."""
        mapping = obj.mapping_overrides
        mapping_changed = "mapping_overrides" in form.changed_data and mapping != form.initial.get("mapping_overrides")
        if mapping_changed:
            obj.mapping_overrides = (form.initial.get("mapping_overrides") or {}) if change else {}
        super().save_model(request, obj, form, change)
        if mapping_changed:
            channel_mapping_save(channel=obj, mapping=mapping, author=request.user, comment="Saved on the channel page")
        data = form.cleaned_data
        typed = data.get("new_webhook_secret") or ""
        new_webhook_channel = not change and obj.format == Channel.Format.WEBHOOK
        generate = data.get("rotate_webhook_secret") or (new_webhook_channel and not typed)
        if typed or generate:
            secret = channel_webhook_secret_set(channel=obj, secret=typed)
            if generate:
                self._show_once(request, obj, secret)
        if data.get("new_poll_headers") is not None or data.get("clear_poll_headers"):
            channel_poll_headers_set(channel=obj, headers=data.get("new_poll_headers") or {})

    @admin.action(description="Rotate the webhook secret of selected channels", permissions=["change"])
    @method_decorator(sensitive_variables())
    def rotate_webhook_secret(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset.select_related("partner"):
            secret = channel_webhook_secret_set(channel=channel)
            self.log_change(request, channel, "Rotated the webhook secret.")
            self._show_once(request, channel, secret)

    def _show_once(self, request: HttpRequest, channel: Channel, secret: str) -> None:
        self.message_user(
            request,
            f"New webhook secret of {channel}: {secret} Copy it now and give it to the partner over a safe "
            "channel: it will not be shown again. The previous secret keeps verifying for the grace period.",
            messages.WARNING,
        )


class ApiTokenForm(ScopedForm):
    class Meta:
        model = ApiToken
        fields = ("partner", "name", "scopes")
        field_classes = {"scopes": ScopesField}


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created here and shown once; only their hash is kept."""

    list_display = ("prefix", "partner", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("partner", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("partner",)
    search_fields = ("prefix", "name", "partner__code")
    form = ApiTokenForm
    fields = ("partner", "name", "scopes", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "partner", "name") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            api_token_scopes_set(token=obj, scopes=obj.scopes)
            return
        token, raw = api_token_create(partner=obj.partner, name=obj.name, scopes=obj.scopes)
        obj.pk = token.pk
        self.message_user(
            request,
            f"API token for {token.partner.code}: {raw}. Copy it now: it is not stored and will not be shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            api_token_revoke(token=token)
        self.message_user(request, f"{queryset.count()} token(s) revoked.", messages.SUCCESS)
