from django.db import models
from django.db.models import Q

from apps.partners.models import Channel, Partner

# What the dead letter list shows (apps/dashboards/health.py DEAD): dead, or out of retries.
DEAD_LETTER = Q(status__in=["dead", "failed"])


class InboundMessage(models.Model):
    """Every payload a partner sent us, stored raw before anything else happens to it."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        PARTIALLY_PROCESSED = "partially_processed", "Partially processed"
        FAILED = "failed", "Failed (retries exhausted)"
        DEAD = "dead", "Dead letter"

    class Source(models.TextChoices):
        API = "api", "API"
        WEBHOOK = "webhook", "Webhook"
        FILE = "file", "File"
        POLL = "poll", "Carrier tracking pull"

    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="messages")
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    source = models.CharField(max_length=10, choices=Source.choices)
    format = models.CharField(max_length=20, help_text="x12, edifact, csv, json, an aggregator name, or auto.")
    body = models.BinaryField(help_text="The exact bytes received.")
    size = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True)
    unmapped_codes = models.JSONField(default=list, blank=True)
    events_count = models.PositiveIntegerField(default=0)
    applied_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    parked_count = models.PositiveIntegerField(default=0)
    unmapped_count = models.PositiveIntegerField(default=0, help_text="Events with a status code we could not map.")
    resent_count = models.PositiveIntegerField(default=0, help_text="Times the same message was sent again.")
    source_time = models.DateTimeField(
        null=True, blank=True, help_text="The latest source time among its events: how fresh its news was."
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    queue = models.CharField(
        max_length=10, default="default", help_text="The worker queue that processes it, chosen when it was received."
    )
    scopes = models.JSONField(
        null=True,
        blank=True,
        help_text="What its sender (token and channel) was allowed to send when it arrived; "
        "empty when the sender was found later, from the channel then.",
    )
    mapping_version = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The version of its channel's mapping its latest processing read (empty: no channel, or "
        "not processed yet).",
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="unique_message_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["partner", "sha256"], condition=Q(partner__isnull=False), name="unique_message_body"
            ),
            models.UniqueConstraint(
                fields=["sha256"], condition=Q(partner__isnull=True), name="unique_message_body_unknown_sender"
            ),
        ]
        permissions = [
            ("replay_inboundmessage", "Can replay dead letters"),
            ("post_inboundmessage", "Can send messages on behalf of a partner"),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"]),
            models.Index(fields=["partner", "status"]),
            models.Index(fields=["channel", "received_at"], name="message_channel_recent"),
            # The dead letter list, newest first, a page at a time: all of them, or one partner's or
            # channel's (unknown senders and messages without a channel included, as nulls).
            models.Index(fields=["-received_at", "-id"], condition=DEAD_LETTER, name="dead_letter_recent"),
            models.Index(
                fields=["partner", "-received_at", "-id"], condition=DEAD_LETTER, name="dead_letter_partner_recent"
            ),
            models.Index(
                fields=["channel", "-received_at", "-id"], condition=DEAD_LETTER, name="dead_letter_channel_recent"
            ),
            # Micro-batching: the small messages waiting on a queue, oldest first.
            models.Index(
                fields=["queue", "size", "id"], condition=Q(status="received"), name="message_waiting_by_queue"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.format} {self.filename or self.source}"

    @property
    def is_dead_letter(self) -> bool:
        return self.status in (self.Status.DEAD, self.Status.FAILED)

    def text(self, limit: int | None = None) -> str:
        data = bytes(self.body[:limit] if limit else self.body)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data.decode("latin-1")


class OutboundMessage(models.Model):
    """A document we send back or out, such as the 997 acknowledging an inbound X12 group."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    inbound = models.ForeignKey(
        InboundMessage, null=True, blank=True, on_delete=models.CASCADE, related_name="acknowledgments"
    )
    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="outbound")
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound")
    format = models.CharField(max_length=20)
    kind = models.CharField(max_length=20, help_text="e.g. 997")
    position = models.PositiveSmallIntegerField(default=0, help_text="Which acknowledgment of the inbound message.")
    control_number = models.CharField(max_length=20, blank=True)
    ack_status = models.CharField(max_length=30, blank=True, help_text="accepted, accepted_with_errors, rejected")
    body = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["inbound", "kind", "position"],
                condition=Q(inbound__isnull=False),
                name="unique_acknowledgment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.control_number} to {self.partner}"
