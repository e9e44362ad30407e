"""Admin for partners and channels: where integration admins configure who sends what."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest

from apps.partners.models import ApiToken, Channel, EdiIdentifier, Partner
from apps.partners.services import api_token_create, api_token_revoke


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


class ChannelForm(forms.ModelForm):
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
            "webhook_secret",
            "mapping_overrides",
        )
        field_classes = {"mapping_overrides": JSONObjectField}
        widgets = {
            "mapping_overrides": forms.Textarea(
                attrs={"rows": 14, "cols": 100, "spellcheck": "false", "style": "font-family: monospace"}
            )
        }


class EdiIdentifierInline(admin.TabularInline):
    model = EdiIdentifier
    extra = 0


class ChannelInline(admin.TabularInline):
    model = Channel
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
    form = ChannelForm
    list_display = ("code", "partner", "name", "format", "direction", "priority", "expected_cadence", "active")
    list_filter = ("format", "direction", "active", "priority", "partner__kind")
    list_select_related = ("partner",)
    search_fields = ("code", "name", "partner__code", "partner__name")
    autocomplete_fields = ("partner",)
    readonly_fields = ("created_at", "updated_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created here and shown once; only their hash is kept."""

    list_display = ("prefix", "partner", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("partner", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("partner",)
    search_fields = ("prefix", "name", "partner__code")
    fields = ("partner", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "partner", "name") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            return
        token, raw = api_token_create(partner=obj.partner, name=obj.name)
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
