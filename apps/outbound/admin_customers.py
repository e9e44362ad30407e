"""Admin for customer-facing updates: e-mail templates with a preview, who is told about what,
the log of e-mails sent, and tracking links (revoke only). Imported by ``apps.outbound.admin``."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from apps.outbound.models import (
    CustomerMilestone,
    CustomerNotification,
    CustomerNotificationSettings,
    NotificationTemplate,
    TrackingLink,
)
from apps.outbound.notifications import (
    CONTEXT_VARIABLES,
    Preview,
    notification_preview,
    notifications_resend,
    parse_recipients,
    template_error,
)
from apps.outbound.tracking import tracking_link_revoke, tracking_url
from apps.partners.models import Partner
from apps.timeline.admin import ReadMostlyAdmin

PREVIEW_TEMPLATE = "admin/outbound/notificationtemplate/_preview.html"


def _validate_template(source: str) -> str:
    error = template_error(source)
    if error:
        raise ValidationError(error)
    return source


class NotificationTemplateForm(forms.ModelForm):
    class Meta:
        model = NotificationTemplate
        fields = ("customer", "milestone", "subject", "body")
        widgets = {"subject": forms.TextInput(attrs={"class": "vLargeTextField", "size": 80})}

    def clean_subject(self) -> str:
        return _validate_template(self.cleaned_data["subject"])

    def clean_body(self) -> str:
        return _validate_template(self.cleaned_data["body"])


class TemplatePreviewForm(forms.Form):
    """The unsaved fields of a template form, as the Preview button posts them."""

    customer = forms.ModelChoiceField(queryset=Partner.objects.filter(kind=Partner.Kind.CUSTOMER), required=False)
    milestone = forms.ChoiceField(choices=CustomerMilestone.choices)
    subject = forms.CharField(max_length=250, strip=False)
    body = forms.CharField(strip=False)


@admin.register(NotificationTemplate)
class NotificationTemplateAdmin(admin.ModelAdmin):
    """A customer's own e-mail for a milestone, or the default; previewed over a real or sample order."""

    form = NotificationTemplateForm
    change_form_template = "admin/outbound/notificationtemplate/change_form.html"
    list_display = ("milestone", "owner", "subject", "updated_at")
    list_filter = ("milestone", ("customer", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("customer",)
    search_fields = ("customer__code", "customer__name", "subject")
    autocomplete_fields = ("customer",)
    fields = ("customer", "milestone", "subject", "body", "preview", "variables", "updated_at")
    readonly_fields = ("preview", "variables", "updated_at")

    @admin.display(description="Customer", ordering="customer__code")
    def owner(self, obj: NotificationTemplate) -> str:
        return obj.customer.code if obj.customer_id else "Default (every customer)"

    @admin.display(description="Preview")
    def preview(self, obj: NotificationTemplate | None) -> SafeString:
        if obj is None or obj.pk is None:
            return _preview_html(None)
        shown = notification_preview(customer=obj.customer, milestone=obj.milestone, subject=obj.subject, body=obj.body)
        return _preview_html(shown)

    @admin.display(description="Variables")
    def variables(self, obj: NotificationTemplate | None) -> SafeString:
        rows = format_html_join("", "<li><code>{{{{ {} }}}}</code>: {}</li>", CONTEXT_VARIABLES.items())
        return format_html('<ul class="template-variables">{}</ul>', rows)

    def get_urls(self) -> list[URLPattern]:
        preview = path(
            "preview/",
            self.admin_site.admin_view(require_POST(self.preview_view)),
            name="outbound_notificationtemplate_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The Preview button: render the form's unsaved subject and body (htmx fragment)."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        form = TemplatePreviewForm(request.POST)
        if not form.is_valid():
            errors = "; ".join(f"{name}: {' '.join(errs)}" for name, errs in form.errors.items())
            return HttpResponse(_preview_html(Preview("", "", f"Fill in every field first ({errors}).", "")))
        data = form.cleaned_data
        shown = notification_preview(
            customer=data["customer"], milestone=data["milestone"], subject=data["subject"], body=data["body"]
        )
        return HttpResponse(_preview_html(shown))


def _preview_html(preview: Preview | None) -> SafeString:
    return SafeString(render_to_string(PREVIEW_TEMPLATE, {"preview": preview}))


class CustomerNotificationSettingsForm(forms.ModelForm):
    milestones = forms.MultipleChoiceField(
        choices=CustomerMilestone.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="An e-mail goes out once per order (and shipment) for each milestone ticked here.",
    )

    class Meta:
        model = CustomerNotificationSettings
        fields = ("customer", "recipients", "milestones", "active")

    def clean_recipients(self) -> str:
        valid, invalid = parse_recipients(self.cleaned_data["recipients"])
        if invalid:
            raise ValidationError(f"Not a valid e-mail address: {', '.join(invalid)}")
        if not valid:
            raise ValidationError("Give at least one e-mail address.")
        return "\n".join(valid)

    def clean_milestones(self) -> list[str]:
        chosen = set(self.cleaned_data["milestones"])
        return [value for value in CustomerMilestone.values if value in chosen]


@admin.register(CustomerNotificationSettings)
class CustomerNotificationSettingsAdmin(admin.ModelAdmin):
    form = CustomerNotificationSettingsForm
    list_display = ("customer", "chosen_milestones", "recipient_count", "active")
    list_filter = ("active",)
    list_select_related = ("customer",)
    search_fields = ("customer__code", "customer__name", "recipients")
    autocomplete_fields = ("customer",)

    @admin.display(description="Milestones")
    def chosen_milestones(self, obj: CustomerNotificationSettings) -> str:
        labels = dict(CustomerMilestone.choices)
        return ", ".join(labels.get(value, value) for value in obj.milestones) or "—"

    @admin.display(description="Recipients")
    def recipient_count(self, obj: CustomerNotificationSettings) -> int:
        return len(parse_recipients(obj.recipients)[0])


@admin.register(CustomerNotification)
class CustomerNotificationAdmin(ReadMostlyAdmin):
    """The log of customer e-mails: what was sent to whom, or why not. Failed ones can be sent again."""

    list_display = ("created_at", "customer", "order", "shipment", "milestone", "status", "attempts", "sent_at")
    list_filter = ("status", "milestone", ("customer", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("customer", "order", "shipment")
    search_fields = ("order__number", "shipment__number", "recipients", "subject")
    date_hierarchy = "created_at"
    actions = ("resend",)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbound.change_customernotification")

    @admin.action(description="Send selected failed or skipped e-mails again", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[CustomerNotification]) -> None:
        count = notifications_resend(notification_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} e-mail(s) queued to be sent again.", messages.SUCCESS)


@admin.register(TrackingLink)
class TrackingLinkAdmin(ReadMostlyAdmin):
    """Links are created from the order page; here they can only be looked at and revoked."""

    list_display = ("order", "created_at", "created_by", "expires_at", "state", "views", "last_viewed_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "expires_at")
    list_select_related = ("order", "created_by")
    search_fields = ("order__number",)
    date_hierarchy = "created_at"
    fields = (
        "order",
        "public_url",
        "created_at",
        "created_by",
        "expires_at",
        "revoked_at",
        "revoked_by",
        "views",
        "last_viewed_at",
    )
    readonly_fields = ("public_url",)
    actions = ("revoke",)

    @admin.display(description="Status")
    def state(self, obj: TrackingLink) -> str:
        return obj.status.capitalize()

    @admin.display(description="Public address")
    def public_url(self, obj: TrackingLink) -> str:
        return tracking_url(obj)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbound.change_trackinglink")

    @admin.action(description="Revoke selected links", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[TrackingLink]) -> None:
        revoked = sum(tracking_link_revoke(link=link, actor=request.user) for link in queryset)
        self.message_user(request, f"{revoked} link(s) revoked.", messages.SUCCESS)
