from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.backends.ddl_references import Statement
from django.db.models import F, Q

from apps.partners.models import Partner
from apps.timeline.models import Order, Shipment
from controltower.indexes import NullsLastIndex


class Queue(models.TextChoices):
    CUSTOMER_SERVICE = "customer_service", "Customer service"
    FINANCE = "finance", "Finance"
    SUPPLY_CHAIN = "supply_chain", "Supply chain"
    INTEGRATION = "integration", "Integration"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class SubjectType(models.TextChoices):
    ORDER = "order", "Order"
    SHIPMENT = "shipment", "Shipment"
    INVOICE = "invoice", "Invoice"
    FREIGHT_CHARGE = "freight_charge", "Freight charge"
    MESSAGE = "message", "Inbound message"
    PARKED_EVENT = "parked_event", "Parked event"
    STOCK_POSITION = "stock_position", "Stock position"
    STOCK_FEED = "stock_feed", "Stock feed"


class ExceptionRule(models.Model):
    """A condition that needs a person, configured in admin. ``code`` names its built-in detector."""

    code = models.CharField(max_length=40, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    queue = models.CharField(max_length=20, choices=Queue.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    threshold = models.DurationField(
        default=timedelta(0), help_text="How long the condition must last before a case opens (e.g. 24:00:00)."
    )
    sla = models.DurationField(
        default=timedelta(days=1), help_text="Time to resolve: a case is due this long after it opens."
    )
    tolerance = models.DecimalField(
        max_digits=6, decimal_places=4, null=True, blank=True, help_text="A fraction, e.g. 0.05 for 5 % above quote."
    )
    scope_customer = models.ForeignKey(
        Partner,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        limit_choices_to={"kind": "customer"},
    )
    scope_partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="Carrier or warehouse."
    )
    scope_region = models.CharField(max_length=60, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["queue", "code"]

    def __str__(self) -> str:
        return self.title


class TrigramIndex(GinIndex):
    """A trigram index (``pg_trgm``) on a text field: PostgreSQL answers ``ILIKE '%words%'`` from it.

    On PostgreSQL it creates the extension first when missing (the migration does too; a database
    made from the models without migrations, as the tests make theirs, needs it here). SQLite, the
    demo's database, has no GIN indexes: there it is a plain index on the field, and its few rows
    are searched without one.
    """

    def __init__(self, *, fields: list[str], name: str, opclasses: tuple[str, ...] = ("gin_trgm_ops",)) -> None:
        super().__init__(fields=fields, name=name, opclasses=opclasses)

    def create_sql(self, model: type[models.Model], schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor == "postgresql":
            index = super().create_sql(model, schema_editor, using=using, **kwargs)
            return Statement("CREATE EXTENSION IF NOT EXISTS pg_trgm; %(index)s", index=index)
        plain = models.Index(fields=self.fields, name=self.name)
        return plain.create_sql(model, schema_editor, using=using, **kwargs)


# Open and acknowledged cases: what queues show (``ExceptionCase.OPEN_STATUSES``).
OPEN_CASES = Q(status__in=["open", "acknowledged"])


class ExceptionCase(models.Model):
    """One thing that needs a person, about one subject; at most one open per (rule, subject)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Dismissed"

    OPEN_STATUSES = (Status.OPEN, Status.ACKNOWLEDGED)

    rule = models.ForeignKey(ExceptionRule, on_delete=models.PROTECT, related_name="cases")
    queue = models.CharField(max_length=20, choices=Queue.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    subject_type = models.CharField(max_length=20, choices=SubjectType.choices)
    subject_id = models.BigIntegerField()
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="cases")
    shipment = models.ForeignKey(Shipment, null=True, blank=True, on_delete=models.CASCADE, related_name="cases")
    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases")
    customer = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    region = models.CharField(max_length=60, blank=True)
    summary = models.CharField(max_length=300)
    amount_at_risk = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    late_probability = models.FloatField(
        null=True, blank=True, help_text="While open: the probability that the case's order misses its promise."
    )

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField()
    due_at = models.DateTimeField()
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=40, blank=True, help_text="'auto' or the reason code given.")
    resolution_note = models.TextField(blank=True)
    condition_cleared_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="For a case closed by hand: when its condition cleared. Until then no new case opens for it.",
    )

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject_type", "subject_id"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="one_open_case_per_rule_and_subject",
            ),
        ]
        # A queue page reads its open cases in the order of its sort, from one of these (keyset
        # pagination: LIMIT 51 after a cursor, whatever the depth).
        indexes = [
            models.Index(fields=["queue", "opened_at", "id"], condition=OPEN_CASES, name="open_cases_by_age"),
            NullsLastIndex(
                F("queue"),
                F("amount_at_risk").desc(nulls_last=True),
                F("opened_at"),
                F("id"),
                condition=OPEN_CASES,
                name="open_cases_by_amount",
            ),
            NullsLastIndex(
                F("queue"),
                F("late_probability").desc(nulls_last=True),
                F("opened_at"),
                F("id"),
                condition=OPEN_CASES,
                name="open_cases_by_risk",
            ),
            models.Index(fields=["assignee", "opened_at", "id"], condition=OPEN_CASES, name="open_cases_by_assignee"),
            models.Index(fields=["queue", "status", "opened_at"]),
            models.Index(fields=["status", "due_at"]),
            models.Index(fields=["subject_type", "subject_id"]),
            # The queue's search box finds words of the summary (``selectors._found_by``).
            TrigramIndex(fields=["summary"], name="case_summary_trigram"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.rule.code} {self.summary}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class CaseEvent(models.Model):
    """The audit history of a case: who did what, when."""

    class Action(models.TextChoices):
        OPENED = "opened", "Opened"
        AUTO_CLOSED = "auto_closed", "Closed automatically"
        ASSIGNED = "assigned", "Assigned"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        COMMENTED = "commented", "Commented"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Dismissed"

    case = models.ForeignKey(ExceptionCase, on_delete=models.CASCADE, related_name="history")
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    reason_code = models.CharField(max_length=40, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} #{self.case_id} at {self.at:%Y-%m-%d %H:%M}"


class NotificationPreference(models.Model):
    """How a person hears about cases in their queues (their role groups decide the queues)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    daily_digest = models.BooleanField(default=True, help_text="Each morning: new and overdue cases of my queues.")
    critical_immediately = models.BooleanField(default=False, help_text="An email as soon as a critical case opens.")

    def __str__(self) -> str:
        return f"Notifications for {self.user}"
