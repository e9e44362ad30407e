"""Publishing what happened: subscriptions, the outbox, deliveries, customer e-mails and links.

``OutboundEvent`` is the transactional outbox: it is written in the transaction that records the
milestone, together with one ``Delivery`` per matching subscription, so a milestone is never
published without its deliveries nor delivered without its milestone.
"""

import json
import secrets
import uuid
from functools import cached_property

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.ingest.models import OutboundMessage
from apps.outbound.routing import subscription_errors
from apps.partners import standard_webhooks
from apps.partners.models import Channel, EdiIdentifier, Partner
from apps.timeline.models import Order, Shipment, per_source

MAX_BATCH_SIZE = 100
# Requests in flight to one endpoint: each is a thread of the sender serving it.
MAX_IN_FLIGHT = 64


def new_secret() -> str:
    return standard_webhooks.secret_generate()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Endpoint(models.Model):
    """Where deliveries go (a URL's origin, or an outbox folder) and its circuit breaker.

    Closed: deliveries flow and consecutive failures are counted. Open: nothing is sent until
    ``retry_at``. Half open: one probe delivery is in flight; its outcome closes or reopens.
    """

    class State(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half open (probing)"

    key = models.CharField(max_length=400, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failures.")
    trips = models.PositiveIntegerField(default=0, help_text="Consecutive openings; each one waits longer.")
    opened_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When an open breaker lets a probe through.")
    probe_started_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    max_in_flight = models.PositiveSmallIntegerField(
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_IN_FLIGHT)],
        help_text=f"Requests sent to this endpoint at the same time, at most (1 to {MAX_IN_FLIGHT}). One sender "
        "serves each endpoint, so a slow one only slows itself.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Subscription(models.Model):
    """A receiver of business events: who, where, which kinds, in which format, for which orders."""

    class Format(models.TextChoices):
        JSON = "json", "Canonical JSON"
        X12 = "x12", "EDI X12 (810 invoices, 997 acknowledgments)"
        EDIFACT = "edifact", "UN/EDIFACT (CONTRL acknowledgments)"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="subscriptions")
    name = models.CharField(max_length=200)
    channel = models.ForeignKey(
        Channel,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriptions",
        help_text="The partner's outbound channel; without a target URL, documents go to its outbox folder.",
    )
    target_url = models.URLField(
        max_length=500, blank=True, help_text="Where deliveries are POSTed. Blank: the channel's outbox folder."
    )
    event_kinds = models.JSONField(
        default=list,
        blank=True,
        help_text='Event kinds or patterns, such as "order.released", "shipment.*" or "*".',
    )
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.JSON)
    acknowledgments = models.BooleanField(
        default=False,
        help_text="Send the acknowledgments of this partner's inbound EDI here: 997s (X12 format) for its X12, "
        "CONTRL messages (EDIFACT format) for its EDIFACT interchanges.",
    )
    # Write-only: shown once when created or rotated, masked everywhere afterwards.
    secret = models.CharField(
        max_length=128,
        default=new_secret,
        editable=False,
        help_text="Signs every delivery (Standard Webhooks: webhook-signature; and X-Signature when kept).",
    )
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    secret_previous = models.CharField(
        max_length=128, blank=True, editable=False, help_text="The secret before the last rotation."
    )
    secret_previous_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Until then webhook-signature carries a signature with the previous secret too.",
    )
    legacy_signature = models.BooleanField(
        default=False,
        verbose_name="send X-Timestamp and X-Signature",
        help_text="Also sign with the headers used before Standard Webhooks, for a receiver that still checks "
        "them. Turn off once it verifies webhook-signature.",
    )
    active = models.BooleanField(default=True)
    customers = models.ManyToManyField(
        Partner,
        blank=True,
        related_name="+",
        limit_choices_to={"kind": Partner.Kind.CUSTOMER},
        help_text="Only these customers' orders (none: every customer). A customer only ever gets its own.",
    )
    regions = models.JSONField(default=list, blank=True, help_text='Only these regions, e.g. ["EU-West"].')
    ordered = models.BooleanField(
        default=False,
        help_text="Deliver one order's events in the order they happened to us: a later one waits for the earlier.",
    )
    batch_size = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_BATCH_SIZE)],
        help_text=f"Events per request, up to {MAX_BATCH_SIZE} (canonical JSON to a URL, not ordered): above 1, "
        'due events go together as {"events": [...]}. 1: one event per request.',
    )
    max_attempts = models.PositiveSmallIntegerField(default=8)
    timeout_seconds = models.PositiveSmallIntegerField(default=10)
    endpoint = models.ForeignKey(
        Endpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["partner__code", "name"]

    def __str__(self) -> str:
        return f"{self.partner.code}: {self.name}"

    def clean(self) -> None:
        partner = self.partner if self.partner_id else None
        errors = subscription_errors(
            partner=partner,
            event_kinds=self.event_kinds,
            format=self.format,
            acknowledgments=self.acknowledgments,
            target_url=self.target_url,
            channel_partner_id=self.channel.partner_id if self.channel_id else None,
            has_channel=bool(self.channel_id),
            has_edi_id=bool(partner) and EdiIdentifier.objects.filter(partner=partner).exists(),
        )
        if self.batch_size > 1 and (self.ordered or self.format != self.Format.JSON or not self.target_url):
            errors["batch_size"] = "Only canonical JSON sent to a URL, not ordered, goes in batches: use 1."
        if not isinstance(self.regions, list) or not all(isinstance(r, str) for r in self.regions):
            errors["regions"] = 'Give a list of regions, e.g. ["EU-West"].'
        if errors:
            raise ValidationError(errors)


class OutboundEvent(models.Model):
    """A business event as published, once, whatever the number of subscribers."""

    event_id = models.CharField(max_length=200)
    source_partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Who said it."
    )
    kind = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    shipment = models.ForeignKey(Shipment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(help_text="The document subscribers receive as canonical JSON.")
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["published_at", "id"]
        constraints = [per_source("outbound")]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_id}"

    @cached_property
    def canonical_json(self) -> bytes:
        """The payload as a subscriber receives it in canonical JSON (compact, keys sorted): encoded
        once for every subscription a batch sends it to."""
        return json.dumps(self.payload, separators=(",", ":"), sort_keys=True).encode()


class Delivery(models.Model):
    """One event (or one 997) for one subscription, until the receiver said 2xx or it is dead."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Dead letter"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(OutboundEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    document = models.ForeignKey(
        OutboundMessage, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=40, help_text="The event kind, or the EDI document (997).")
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts since it was created or replayed.")
    logged_attempts = models.PositiveIntegerField(default=0, help_text="Attempts over its whole life: the log's last.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A sender holds it until then.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    held_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The earlier delivery of the same order this one waited for when last looked at.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    freshness_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="From the commit that published it (the outbox row) to the receiver's 2xx, retries included.",
    )
    dead_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event"], condition=Q(event__isnull=False), name="unique_event_delivery"
            ),
            models.UniqueConstraint(
                fields=["subscription", "document"],
                condition=Q(document__isnull=False),
                name="unique_document_delivery",
            ),
            models.CheckConstraint(
                condition=Q(event__isnull=False, document__isnull=True) | Q(event__isnull=True, document__isnull=False),
                name="delivery_has_one_content",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["subscription", "-id"], name="delivery_recent"),
            # The delivery log filtered by status, a page at a time, and its counts per status.
            models.Index(fields=["subscription", "status", "-id"], name="delivery_recent_by_status"),
            models.Index(fields=["delivered_at"], condition=Q(status="delivered"), name="delivery_delivered_at"),
            models.Index(
                fields=["subscription", "order", "id"],
                condition=Q(order__isnull=False) & ~Q(status="delivered"),
                name="delivery_undelivered_per_order",
            ),
        ]
        permissions = [("replay_delivery", "Can replay dead deliveries")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} to {self.subscription_id}"


class DeliveryAttempt(models.Model):
    """One try: what was sent (body and signed headers) and what came back."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, help_text="delivered, retry or dead")
    error = models.TextField(blank=True)
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField()
    response_body = models.TextField(blank=True, help_text="The first kilobytes of the answer.")

    class Meta:
        ordering = ["delivery", "number"]
        indexes = [models.Index(fields=["started_at"], name="attempt_started")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"


# --- customer-facing updates ----------------------------------------------------------------------


class CustomerMilestone(models.TextChoices):
    """What a customer can ask to be told about, by e-mail."""

    SHIPPED = "shipped", "Shipped with tracking"
    DELAYED = "delayed", "Delayed"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    DELIVERED = "delivered", "Delivered"
    INVOICE_ISSUED = "invoice_issued", "Invoice issued"


class NotificationTemplate(models.Model):
    """The e-mail for one milestone: a customer's own, or (no customer) everyone's default.

    Subject and body are Django templates over a small, documented context (never model objects).
    """

    customer = models.ForeignKey(
        Partner,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_templates",
        limit_choices_to={"kind": Partner.Kind.CUSTOMER},
        help_text="Blank: the default for every customer without a template of its own.",
    )
    milestone = models.CharField(max_length=20, choices=CustomerMilestone.choices)
    subject = models.CharField(max_length=250)
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer__code", "milestone"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "milestone"], condition=Q(customer__isnull=False), name="unique_customer_template"
            ),
            models.UniqueConstraint(
                fields=["milestone"], condition=Q(customer__isnull=True), name="unique_default_template"
            ),
        ]

    def __str__(self) -> str:
        owner = self.customer.code if self.customer_id else "default"
        return f"{owner}: {self.get_milestone_display()}"


class CustomerNotificationSettings(models.Model):
    """Who at a customer is told, about which milestones."""

    customer = models.OneToOneField(
        Partner,
        on_delete=models.CASCADE,
        related_name="notification_settings",
        limit_choices_to={"kind": Partner.Kind.CUSTOMER},
    )
    recipients = models.TextField(help_text="E-mail addresses, one per line or separated by commas.")
    milestones = models.JSONField(default=list, blank=True, help_text="The milestones to send an e-mail for.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["customer__code"]
        verbose_name_plural = "customer notification settings"

    def __str__(self) -> str:
        return f"Notifications for {self.customer.code}"


class CustomerNotification(models.Model):
    """An e-mail to a customer about one milestone of one order (and shipment): at most one each."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Not sent (turned off)"

    customer = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="customer_notifications")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="customer_notifications")
    shipment = models.ForeignKey(
        Shipment, null=True, blank=True, on_delete=models.CASCADE, related_name="customer_notifications"
    )
    milestone = models.CharField(max_length=20, choices=CustomerMilestone.choices)
    event_id = models.CharField(max_length=200, help_text="The event that reached the milestone first.")
    source_partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Who sent that event."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    recipients = models.TextField(blank=True)
    subject = models.CharField(max_length=250, blank=True)
    body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Blank: as soon as possible.")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A sender holds it until then.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "shipment", "milestone"],
                condition=Q(shipment__isnull=False),
                name="unique_shipment_notification",
            ),
            models.UniqueConstraint(
                fields=["order", "milestone"], condition=Q(shipment__isnull=True), name="unique_order_notification"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="notification_pending"),
            models.Index(fields=["status", "next_attempt_at"], name="notification_due"),
        ]

    def __str__(self) -> str:
        return f"{self.get_milestone_display()} for {self.order_id}"


class TrackingLink(models.Model):
    """A shareable, read-only view of one order's timeline: unguessable, expiring, revocable."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="tracking_links")
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_viewed_at = models.DateTimeField(null=True, blank=True)
    views = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Tracking link for {self.order_id}"

    @property
    def status(self) -> str:
        """Revoked, expired or active (as of now): "revoked", "expired" or "active"."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "active"
