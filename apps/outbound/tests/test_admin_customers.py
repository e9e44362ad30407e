"""Admin for customer updates: templates validated and previewed, settings checked, logs read-only."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

import apps.outbound.admin_customers  # noqa: F401 - registers the admin classes, whoever imports admin.py
from apps.outbound.models import CustomerNotification, CustomerNotificationSettings, NotificationTemplate, TrackingLink
from apps.partners.models import Partner
from tests.factories import (
    CustomerNotificationSettingsFactory,
    NotificationTemplateFactory,
    OrderFactory,
    PartnerFactory,
    ReferenceFactory,
    ShipmentFactory,
    TrackingLinkFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def preview_url() -> str:
    return reverse("admin:outbound_notificationtemplate_preview")


@pytest.fixture
def acme() -> Partner:
    return PartnerFactory(code="ACME", name="Acme Retail", time_zone="Europe/Paris")


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def template_form(customer: Partner | None = None, **fields: str) -> dict[str, str]:
    return {
        "customer": str(customer.pk) if customer else "",
        "milestone": "delivered",
        "subject": "Order {{ order_number }} delivered",
        "body": "Hello {{ customer_name }}, tracking {{ tracking_number }}.",
        **fields,
    }


@pytest.mark.parametrize(
    "model", ["notificationtemplate", "customernotificationsettings", "customernotification", "trackinglink"]
)
def test_every_list_opens(admin_client, model, acme):
    NotificationTemplateFactory(customer=acme)
    CustomerNotificationSettingsFactory(customer=acme)
    TrackingLinkFactory(order=OrderFactory(customer=acme))

    assert admin_client.get(reverse(f"admin:outbound_{model}_changelist")).status_code == 200


def test_the_change_page_previews_the_template_over_the_customers_latest_order(admin_client, acme):
    OrderFactory(customer=acme, number="SO-OLD", ordered_at=timezone.now() - timedelta(days=9))
    order = OrderFactory(customer=acme, number="SO-NEW", ordered_at=timezone.now())
    ReferenceFactory(order=order, kind="po", value="PO-42")
    ShipmentFactory(orders=[order], tracking_number="1ZPREVIEW")
    template = NotificationTemplateFactory(
        customer=acme, subject="{{ order_number }} ({{ po_number }}) delivered", body="Tracking {{ tracking_number }}."
    )

    response = admin_client.get(reverse("admin:outbound_notificationtemplate_change", args=[template.pk]))

    content = response.content.decode()
    assert "SO-NEW (PO-42) delivered" in content
    assert "Tracking 1ZPREVIEW." in content
    assert "order SO-NEW, the customer&#x27;s most recent" in content
    assert "{{ customer_name }}" in content, "the variables are listed"
    assert not TrackingLink.objects.exists(), "a preview writes nothing"


def test_a_default_template_previews_over_a_sample_order(admin_client):
    template = NotificationTemplateFactory(subject="{{ order_number }} delivered")

    response = admin_client.get(reverse("admin:outbound_notificationtemplate_change", args=[template.pk]))

    assert "SO-SAMPLE-0001 delivered" in response.content.decode()
    assert "a sample order (made-up values)" in response.content.decode()


def test_the_preview_button_renders_unsaved_edits(admin_client, acme):
    template = NotificationTemplateFactory(customer=acme, subject="Saved subject")

    response = admin_client.post(preview_url(), template_form(acme, subject="Unsaved {{ customer_name|upper }}"))

    assert response.status_code == 200
    assert "Unsaved ACME RETAIL" in response.content.decode()
    template.refresh_from_db()
    assert template.subject == "Saved subject"


def test_the_preview_button_explains_a_syntax_error(admin_client):
    response = admin_client.post(preview_url(), template_form(body="{% if customer_name %}never closed"))

    assert response.status_code == 200
    assert "syntax error" in response.content.decode()


def test_only_people_who_may_edit_templates_can_preview(client):
    client.force_login(UserFactory(is_staff=True, permissions=["outbound.view_notificationtemplate"]))

    assert client.post(preview_url(), template_form()).status_code == 403


@pytest.mark.parametrize(
    ("field", "source", "message"),
    [
        ("subject", "{% if %}", "syntax error"),
        ("body", "{{ order_number|nosuchfilter }}", "syntax error"),
        ("body", "{% debug %}", "is not available here"),
        ("body", '{% include "base.html" %}', "is not available here"),
        ("body", "Track it: {{ tracking_ur }}", "unknown variable {{ tracking_ur }}"),
        ("subject", "Order {{ order_number }} for {{ customer.name }}", "unknown variable {{ customer }}:"),
    ],
)
def test_a_template_that_would_not_render_is_refused_at_edit_time(admin_client, field, source, message):
    response = admin_client.post(reverse("admin:outbound_notificationtemplate_add"), template_form(**{field: source}))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not NotificationTemplate.objects.exists()


def test_a_valid_template_is_saved(admin_client, acme):
    response = admin_client.post(reverse("admin:outbound_notificationtemplate_add"), template_form(acme))

    assert response.status_code == 302
    assert NotificationTemplate.objects.get().customer == acme


def test_settings_take_milestones_as_checkboxes_and_clean_addresses(admin_client, acme):
    add = reverse("admin:outbound_customernotificationsettings_add")
    page = admin_client.get(add).content.decode()
    assert 'type="checkbox" name="milestones" value="invoice_issued"' in page

    response = admin_client.post(
        add,
        {
            "customer": acme.pk,
            "recipients": " ops@acme.example;buyer@acme.example\nops@acme.example ",
            "milestones": ["delivered", "shipped"],
            "active": "on",
        },
    )

    assert response.status_code == 302
    saved = CustomerNotificationSettings.objects.get()
    assert saved.milestones == ["shipped", "delivered"]
    assert saved.recipients == "ops@acme.example\nbuyer@acme.example"


def test_settings_refuse_an_invalid_address(admin_client, acme):
    response = admin_client.post(
        reverse("admin:outbound_customernotificationsettings_add"),
        {"customer": acme.pk, "recipients": "ops@acme.example, nope@", "milestones": ["delivered"]},
    )

    assert response.status_code == 200
    assert "Not a valid e-mail address: nope@" in response.content.decode()
    assert not CustomerNotificationSettings.objects.exists()


def failed_notification(customer: Partner) -> CustomerNotification:
    return CustomerNotification.objects.create(
        customer=customer,
        order=OrderFactory(customer=customer),
        milestone="delivered",
        event_id="e-1",
        status=CustomerNotification.Status.FAILED,
        attempts=4,
        error="gave up after 4 attempts: SMTPServerDisconnected",
    )


def test_the_notification_log_filters_and_cannot_be_edited(admin_client, acme):
    notification = failed_notification(acme)
    changelist = reverse("admin:outbound_customernotification_changelist")

    for query in ("?status=failed", "?milestone=delivered", f"?customer__id__exact={acme.pk}"):
        response = admin_client.get(changelist + query)
        assert response.status_code == 200
        assert response.context["cl"].result_count == 1
    assert admin_client.get(changelist + "?status=sent").context["cl"].result_count == 0
    assert admin_client.get(reverse("admin:outbound_customernotification_add")).status_code == 403
    change = reverse("admin:outbound_customernotification_change", args=[notification.pk])
    assert 'name="_save"' not in admin_client.get(change).content.decode()


def test_a_failed_notification_can_be_sent_again(admin_client, acme, django_capture_on_commit_callbacks):
    notification = failed_notification(acme)
    CustomerNotificationSettingsFactory(customer=acme, recipients="ops@acme.example", milestones=["delivered"])
    NotificationTemplateFactory(subject="Delivered {{ order_number }}")

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:outbound_customernotification_changelist"),
            {"action": "resend", "_selected_action": [notification.pk]},
        )

    notification.refresh_from_db()
    assert notification.status == CustomerNotification.Status.SENT
    assert mail.outbox[0].to == ["ops@acme.example"]


def test_tracking_links_are_read_only_but_can_be_revoked(admin_client):
    link = TrackingLinkFactory()
    change = reverse("admin:outbound_trackinglink_change", args=[link.pk])

    content = admin_client.get(change).content.decode()
    assert f"/track/{link.token}/" in content
    assert 'name="_save"' not in content
    admin_client.post(
        reverse("admin:outbound_trackinglink_changelist"), {"action": "revoke", "_selected_action": [link.pk]}
    )

    link.refresh_from_db()
    assert link.revoked_at is not None


def test_revoking_needs_the_change_permission(client):
    link = TrackingLinkFactory()
    client.force_login(UserFactory(is_staff=True, permissions=["outbound.view_trackinglink"]))
    changelist = reverse("admin:outbound_trackinglink_changelist")

    assert "Revoke selected links" not in client.get(changelist).content.decode()
    client.post(changelist, {"action": "revoke", "_selected_action": [link.pk]})

    link.refresh_from_db()
    assert link.revoked_at is None
