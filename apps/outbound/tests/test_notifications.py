"""Customer e-mails: once per milestone, only the chosen ones, to that customer, from its template."""

import importlib
import smtplib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from apps.outbound.models import CustomerNotification, NotificationTemplate, TrackingLink
from apps.outbound.notifications import (
    MAX_ATTEMPTS,
    _claim,
    notifications_resend,
    notifications_send,
    parse_recipients,
    template_error,
)
from apps.outbound.tracking import tracking_link_resolve
from apps.partners.models import Partner
from apps.timeline.models import Order
from apps.timeline.services import apply_events
from tests.factories import CustomerNotificationSettingsFactory, NotificationTemplateFactory, PartnerFactory
from tests.stories import T0, at, carrier, event, events, manifested, order_created, ref

pytestmark = pytest.mark.django_db

ACME_TO = ["logistics@acme.example", "buyer@acme.example"]
ALL_VARIABLES = (
    "customer={{ customer_name }}|order={{ order_number }}|po={{ po_number }}|milestone={{ milestone }}|"
    "at={{ occurred_at }}|shipment={{ shipment_number }}|tracking={{ tracking_number }}|carrier={{ carrier }}|"
    "eta={{ estimated_delivery }}|promised={{ promised_date }}|reason={{ delay_reason }}|"
    "invoice={{ invoice_number }}|amount={{ invoice_amount }}|currency={{ currency }}|url={{ tracking_url }}"
)


class FailingBackend(BaseEmailBackend):
    """An SMTP server that hangs up on every message."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


@pytest.fixture
def partners() -> dict[str, Partner]:
    return {
        "ACME": PartnerFactory(code="ACME", name="Acme & Sons", time_zone="Europe/Paris"),
        "GLOBEX": PartnerFactory(code="GLOBEX", name="Globex", time_zone="America/New_York"),
        "UPSN": PartnerFactory(code="UPSN", name="UPS", kind=Partner.Kind.CARRIER),
        "DHL": PartnerFactory(code="DHL", name="DHL Express", kind=Partner.Kind.CARRIER),
    }


@pytest.fixture
def defaults() -> dict[str, NotificationTemplate]:
    """A default template per milestone, naming the milestone and the order."""
    return {
        milestone: NotificationTemplateFactory(
            milestone=milestone,
            subject="{{ milestone }}: order {{ order_number }}",
            body="Hello {{ customer_name }}, {{ milestone }} at {{ occurred_at }}.",
        )
        for milestone in ("shipped", "delayed", "out_for_delivery", "delivered", "invoice_issued")
    }


@pytest.fixture
def acme_settings(partners):
    return CustomerNotificationSettingsFactory(
        customer=partners["ACME"],
        recipients="logistics@acme.example,\nbuyer@acme.example",
        milestones=["shipped", "delayed", "out_for_delivery", "delivered", "invoice_issued"],
    )


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Apply events as a worker would, then run what their commit queued (the e-mails)."""

    def _run(*items, partner: str | None = None):
        with django_capture_on_commit_callbacks(execute=True):
            return apply_events(events(*items, partner=partner))

    return _run


def created(number: str = "SO-1", customer: str = "ACME") -> dict:
    return order_created(number, order={"customer": customer, "promised_at": at(96)})


def subjects() -> list[str]:
    return [message.subject for message in mail.outbox]


def test_shipped_is_sent_once_on_a_manifest_with_tracking(partners, defaults, acme_settings, run):
    run(created())
    run(manifested("SH-1", "1Z1", "SO-1", attributes={"carrier": "UPSN"}))

    assert subjects() == ["Shipped with tracking: order SO-1"]
    assert sorted(mail.outbox[0].to) == sorted(ACME_TO)
    notification = CustomerNotification.objects.get()
    assert notification.status == CustomerNotification.Status.SENT
    assert notification.subject == "Shipped with tracking: order SO-1"
    assert notification.recipients == "logistics@acme.example, buyer@acme.example"
    assert notification.body.startswith("Hello Acme & Sons, Shipped with tracking at ")
    assert notification.sent_at is not None

    run(manifested("SH-1", "1Z1", "SO-1", attributes={"carrier": "UPSN"}))  # the same event again
    run(event("SH-1-tracking", "shipment.tracking_assigned", 11, ref("shipment", "SH-1"), ref("tracking", "1Z1")))

    assert len(mail.outbox) == 1
    assert CustomerNotification.objects.count() == 1


def test_shipped_waits_for_tracking_when_the_manifest_has_none(partners, defaults, acme_settings, run):
    run(created())
    run(event("SH-1-manifested", "shipment.manifested", 10, ref("shipment", "SH-1"), ref("order", "SO-1")))
    assert mail.outbox == []

    assigned = event("SH-1-tracking", "shipment.tracking_assigned", 11, ref("shipment", "SH-1"), ref("tracking", "1Z1"))
    run(assigned)
    run({**assigned, "event_id": "SH-1-tracking-from-the-carrier"}, partner="UPSN")  # a second source, same milestone

    assert subjects() == ["Shipped with tracking: order SO-1"]


def test_a_second_source_reporting_the_same_milestone_sends_nothing(partners, defaults, acme_settings, run):
    run(created(), manifested("SH-1", "1Z1", "SO-1", attributes={"carrier": "UPSN"}))
    mail.outbox.clear()

    run(carrier("1Z1", "shipment.delivered", 30), partner="UPSN")
    run({**carrier("1Z1", "shipment.delivered", 30), "event_id": "edi-214-delivered"}, partner="UPSN")
    run({**carrier("1Z1", "shipment.delivered", 31), "event_id": "webhook-delivered-later"}, partner="UPSN")

    assert subjects() == ["Delivered: order SO-1"]
    assert CustomerNotification.objects.filter(milestone="delivered").count() == 1


def test_only_the_milestones_the_customer_chose_are_sent(partners, defaults, run):
    CustomerNotificationSettingsFactory(customer=partners["ACME"], milestones=["delivered"])

    run(created(), manifested("SH-1", "1Z1", "SO-1"))
    run(carrier("1Z1", "shipment.delayed", 20, attributes={"reason": "Weather"}))
    run(carrier("1Z1", "shipment.out_for_delivery", 29))
    assert mail.outbox == []

    run(carrier("1Z1", "shipment.delivered", 30))
    assert subjects() == ["Delivered: order SO-1"]


def test_each_customer_hears_only_about_its_own_orders(partners, defaults, acme_settings, run):
    CustomerNotificationSettingsFactory(
        customer=partners["GLOBEX"], recipients="ops@globex.example", milestones=["delivered"]
    )
    run(created("SO-1", "ACME"), created("SO-2", "GLOBEX"))
    run(manifested("SH-1", "1Z1", "SO-1"), manifested("SH-2", "1Z2", "SO-2"))
    mail.outbox.clear()

    run(carrier("1Z2", "shipment.delivered", 30))

    assert [message.to for message in mail.outbox] == [["ops@globex.example"]]
    assert "SO-2" in mail.outbox[0].subject
    assert not CustomerNotification.objects.filter(customer=partners["ACME"], milestone="delivered").exists()


def test_a_customer_without_settings_gets_nothing(partners, defaults, run):
    run(created(), manifested("SH-1", "1Z1", "SO-1"), carrier("1Z1", "shipment.delivered", 30))

    assert mail.outbox == []
    assert not CustomerNotification.objects.exists()


def test_a_customer_template_overrides_the_default(partners, defaults, acme_settings, run):
    CustomerNotificationSettingsFactory(customer=partners["GLOBEX"], recipients="ops@globex.example")
    NotificationTemplateFactory(
        customer=partners["ACME"], milestone="delivered", subject="ACME: {{ order_number }} arrived", body="Arrived."
    )
    run(created("SO-1", "ACME"), created("SO-2", "GLOBEX"), manifested("SH-1", "1Z1", "SO-1", "SO-2"))
    mail.outbox.clear()

    run(carrier("1Z1", "shipment.delivered", 30))

    assert sorted(subjects()) == ["ACME: SO-1 arrived", "Delivered: order SO-2"]


def test_the_context_is_plain_values_in_the_customer_time_zone(partners, acme_settings, run, settings):
    settings.PUBLIC_BASE_URL = "https://track.example.com"
    for milestone in ("delayed", "invoice_issued"):
        NotificationTemplateFactory(milestone=milestone, subject="{{ milestone }}", body=ALL_VARIABLES)
    run(created(), manifested("SH-1", "1Z1", "SO-1", attributes={"carrier": "UPSN"}))
    run(carrier("1Z1", "shipment.eta_updated", 15, estimated_delivery_at=at(100)))
    run(carrier("1Z1", "shipment.delayed", 20, attributes={"reason": "Weather"}))
    run(
        event(
            "inv",
            "invoice.generated",
            40,
            ref("invoice", "INV-9"),
            ref("order", "SO-1"),
            amount="1234.5",
            currency="EUR",
        )
    )

    delayed, invoice = (dict(part.split("=", 1) for part in m.body.strip().split("|")) for m in mail.outbox)
    # 2 Nov 2026 08:00 UTC + 20 h is 3 Nov 05:00 in Paris (CET, UTC+1).
    assert delayed["at"] == "03 Nov 2026 05:00 CET"
    assert delayed["eta"] == "06 Nov 2026 13:00 CET"
    assert delayed["promised"] == "06 Nov 2026"
    assert (delayed["customer"], delayed["order"], delayed["po"]) == ("Acme & Sons", "SO-1", "PO-SO-1")
    assert (delayed["shipment"], delayed["tracking"], delayed["carrier"]) == ("SH-1", "1Z1", "UPS")
    assert (delayed["milestone"], delayed["reason"], delayed["invoice"]) == ("Delayed", "Weather", "")
    assert (invoice["invoice"], invoice["amount"], invoice["currency"]) == ("INV-9", "1,234.50", "EUR")
    assert invoice["shipment"] == ""
    assert delayed["url"].startswith("https://track.example.com/track/")
    assert invoice["url"] == delayed["url"], "the order's link is reused while it stays valid"
    token = delayed["url"].rstrip("/").rsplit("/", 1)[1]
    assert tracking_link_resolve(token).order == Order.objects.get(number="SO-1")
    assert TrackingLink.objects.count() == 1


def test_no_link_is_made_for_a_template_that_does_not_use_it(partners, defaults, acme_settings, run):
    run(created(), manifested("SH-1", "1Z1", "SO-1"))

    assert len(mail.outbox) == 1
    assert not TrackingLink.objects.exists()


def test_plain_text_is_not_html_escaped(partners, acme_settings, run):
    NotificationTemplateFactory(
        milestone="shipped", subject="For {{ customer_name }}", body="<b>{{ customer_name }}</b>"
    )
    run(created(), manifested("SH-1", "1Z1", "SO-1"))

    assert mail.outbox[0].subject == "For Acme & Sons"
    assert mail.outbox[0].body == "<b>Acme & Sons</b>\n"


def test_a_template_syntax_error_fails_the_notification_with_the_reason(partners, defaults, acme_settings, run):
    NotificationTemplateFactory(
        customer=partners["ACME"], milestone="shipped", subject="{% if %}broken", body="Hello {{ customer_name }}"
    )

    run(created(), manifested("SH-1", "1Z1", "SO-1"))

    notification = CustomerNotification.objects.get()
    assert notification.status == CustomerNotification.Status.FAILED
    assert "ACME: Shipped with tracking" in notification.error
    assert "syntax error" in notification.error
    assert mail.outbox == []


def test_a_forbidden_tag_fails_the_notification(partners, acme_settings, run):
    NotificationTemplateFactory(milestone="shipped", subject="Shipped", body="{% debug %}")

    run(created(), manifested("SH-1", "1Z1", "SO-1"))

    notification = CustomerNotification.objects.get()
    assert notification.status == CustomerNotification.Status.FAILED
    assert "{% debug %} is not available" in notification.error
    assert mail.outbox == []


@pytest.mark.parametrize(
    "source",
    ['{% include "base.html" %}', "{% load humanize %}", '{% extends "base.html" %}', '{% url "home" %}', "{% if %}"],
)
def test_templates_cannot_reach_files_libraries_or_urls(source):
    assert template_error(source)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ order_numbr }} {{ customer_name.title }}", "unknown variable {{ order_numbr }}: use"),
        ("{{ carier }}{{ eta|default:'soon' }}", "unknown variables {{ carier }}, {{ eta }}: use"),
        ("{% if delay_reasn %}Why: {{ delay_reason }}{% endif %}", "unknown variable {{ delay_reasn }}: use"),
        ("{% for line in linez %}{{ line }}{% endfor %}", "unknown variable {{ linez }}: use"),
    ],
)
def test_a_misspelt_variable_is_named_at_edit_time(source, error):
    assert template_error(source).startswith(error)


def test_variables_a_template_sets_itself_are_known():
    loop = "{% for c in order_number %}{% if c %}{{ forloop.counter }}{{ c }}{% endif %}{% endfor %}"
    alias = "{% with n=order_number %}{{ n }}{% endwith %}"

    assert template_error(loop + alias) is None


def test_a_missing_template_fails_the_notification_with_the_reason(partners, acme_settings, run):
    run(created(), manifested("SH-1", "1Z1", "SO-1"))

    notification = CustomerNotification.objects.get()
    assert notification.status == CustomerNotification.Status.FAILED
    assert notification.error == 'no template for "Shipped with tracking": add a default one in admin'


def test_an_smtp_failure_is_retried_with_a_growing_delay_then_fails(partners, defaults, acme_settings, run, settings):
    settings.EMAIL_BACKEND = "apps.outbound.tests.test_notifications.FailingBackend"
    run(created(), manifested("SH-1", "1Z1", "SO-1"))

    notification = CustomerNotification.objects.get()
    assert (notification.status, notification.attempts) == (CustomerNotification.Status.PENDING, 1)
    assert notification.error.startswith("attempt 1 of 4 failed: SMTPServerDisconnected: Connection unexpectedly")
    assert notification.next_attempt_at > timezone.now()
    assert notifications_send() == 0, "not due yet"

    delays, now = [], timezone.now()
    for _ in range(MAX_ATTEMPTS - 1):
        previous = notification.next_attempt_at
        now = previous + timedelta(seconds=1)
        notifications_send(now=now)
        notification.refresh_from_db()
        if notification.status == CustomerNotification.Status.PENDING:
            delays.append(notification.next_attempt_at - previous)

    assert len(delays) == MAX_ATTEMPTS - 2
    assert delays[0] < delays[1], "each retry waits longer"
    assert notification.status == CustomerNotification.Status.FAILED
    assert notification.attempts == MAX_ATTEMPTS
    assert notification.error.startswith("gave up after 4 attempts: SMTPServerDisconnected")
    assert notifications_send(now=now + timedelta(days=1)) == 0

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notifications_resend(notification_ids=[notification.pk]) == 1
    assert notifications_send() == 1
    notification.refresh_from_db()
    assert (notification.status, notification.error) == (CustomerNotification.Status.SENT, "")


def test_a_notification_is_claimed_by_one_sender_only(partners, acme_settings):
    notification = CustomerNotification.objects.create(
        customer=partners["ACME"],
        order=Order.objects.create(number="SO-9", customer=partners["ACME"]),
        milestone="delivered",
        event_id="e-1",
    )
    now = timezone.now()

    assert _claim(notification.pk, now) is True
    assert _claim(notification.pk, now) is False
    assert notifications_send(now=now) == 0, "another sender holds it"


def test_a_claim_abandoned_by_a_dead_sender_is_sent_again(partners, defaults, acme_settings):
    order = Order.objects.create(number="SO-9", customer=partners["ACME"])
    notification = CustomerNotification.objects.create(
        customer=partners["ACME"], order=order, milestone="delivered", event_id="e-1"
    )
    _claim(notification.pk, timezone.now() - timedelta(hours=1))

    assert notifications_send() == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (CustomerNotification.Status.SENT, 2)


def test_invalid_addresses_are_skipped_and_said(partners, defaults, run):
    CustomerNotificationSettingsFactory(
        customer=partners["ACME"], recipients="ok@acme.example; not-an-address", milestones=["shipped"]
    )

    run(created(), manifested("SH-1", "1Z1", "SO-1"))

    assert mail.outbox[0].to == ["ok@acme.example"]
    notification = CustomerNotification.objects.get()
    assert notification.status == CustomerNotification.Status.SENT
    assert notification.error == "skipped invalid addresses: not-an-address"


def test_an_e_mail_turned_off_before_it_was_sent_is_skipped(
    partners, defaults, acme_settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        apply_events(events(created(), manifested("SH-1", "1Z1", "SO-1")))
    acme_settings.milestones = ["delivered"]
    acme_settings.save()

    assert notifications_send() == 0
    assert CustomerNotification.objects.get().status == CustomerNotification.Status.SKIPPED
    assert mail.outbox == []


def test_recipients_are_split_on_commas_semicolons_and_lines():
    assert parse_recipients(" a@x.example, b@y.example\nnope;a@x.example\n\n") == (
        ["a@x.example", "b@y.example"],
        ["nope"],
    )


def test_the_data_migration_adds_valid_defaults_and_removes_them():
    migration = importlib.import_module("apps.outbound.migrations.0003_default_notification_templates")

    migration.create_defaults(django_apps, None)
    migration.create_defaults(django_apps, None)  # again: nothing doubles

    defaults = NotificationTemplate.objects.filter(customer__isnull=True)
    assert sorted(defaults.values_list("milestone", flat=True)) == sorted(
        ["shipped", "delayed", "out_for_delivery", "delivered", "invoice_issued"]
    )
    assert all(template_error(t.subject) is None and template_error(t.body) is None for t in defaults)
    migration.delete_defaults(django_apps, None)
    assert not NotificationTemplate.objects.exists()


def test_times_before_the_story_are_formatted_in_utc_when_the_zone_is_utc(partners, defaults, run):
    partners["ACME"].time_zone = "UTC"
    partners["ACME"].save()
    CustomerNotificationSettingsFactory(customer=partners["ACME"], milestones=["shipped"])

    run(created(), manifested("SH-1", "1Z1", "SO-1", hours=10))

    expected = (T0 + timedelta(hours=10)).strftime("%d %b %Y %H:%M UTC")
    assert mail.outbox[0].body == f"Hello Acme & Sons, Shipped with tracking at {expected}.\n"
