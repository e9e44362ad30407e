from django.db import models
from django.db.models.functions import Coalesce

from apps.partners.models import Partner
from apps.timeline.models import Order


class Metric(models.TextChoices):
    """The measured KPIs. Durations are kept in seconds; rates as hits out of a count."""

    ORDER_TO_SHIP = "order_to_ship", "Order to ship"
    PICK_TIME = "pick_time", "Warehouse pick time"
    SHIP_TIME = "ship_time", "Warehouse ship time"
    TRANSIT_TIME = "transit_time", "Carrier transit time"
    ON_TIME = "on_time", "On time"
    IN_FULL = "in_full", "In full"
    OTIF = "otif", "On time in full"
    DELIVERY_TO_INVOICE = "delivery_to_invoice", "Delivery to invoice"
    FREIGHT_SETTLEMENT = "freight_settlement", "Freight posted to settled"
    COMPLETE_TIMELINE = "complete_timeline", "Complete timeline"
    SOURCE_LAG = "source_lag", "Event freshness (source to received)"
    APPLY_LAG = "apply_lag", "Processing latency (received to applied)"
    FAILED_MESSAGES = "failed_messages", "Failed messages"
    DUPLICATE_EVENTS = "duplicate_events", "Duplicate events"
    UNMAPPED_STATUSES = "unmapped_statuses", "Unmapped status codes"
    ACKNOWLEDGED = "acknowledged", "997 accepted"
    RESOLUTION_TIME = "resolution_time", "Time to resolve a case"


class PendingRefresh(models.Model):
    """A subject whose facts are to be refreshed. Requests gather here, and one drain refreshes
    every subject waiting, however many messages asked while it was queued."""

    subject_type = models.CharField(max_length=16)
    subject_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject_type", "subject_id"], name="unique_pending_refresh"),
        ]

    def __str__(self) -> str:
        return f"{self.subject_type}#{self.subject_id}"


class Fact(models.Model):
    """One subject's contribution to one metric: what rollups add up and drill-downs list.

    ``partner`` is the partner the metric holds to account: the warehouse for pick and ship
    times, the carrier for transit, OTIF and freight, the sender for message metrics.
    """

    metric = models.CharField(max_length=24, choices=Metric.choices)
    subject_type = models.CharField(max_length=16)
    subject_id = models.BigIntegerField()
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    region = models.CharField(max_length=60, blank=True)
    detail = models.CharField(max_length=40, blank=True, help_text="The queue of a case, the format of a message.")
    count = models.PositiveIntegerField(default=1, help_text="How many this subject counts for (events of a message).")
    hits = models.PositiveIntegerField(default=0, help_text="Of those, how many met the metric (on time, failed…).")
    seconds = models.FloatField(null=True, blank=True, help_text="The duration measured, for duration metrics.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["metric", "subject_type", "subject_id"], name="unique_fact_per_subject"),
        ]
        indexes = [
            models.Index(fields=["metric", "day"]),
            models.Index(fields=["subject_type", "subject_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.subject_type}#{self.subject_id} on {self.day}"


class Rollup(models.Model):
    """The sum of the facts of one metric, day and dimension set; what dashboards read.

    One row per (metric, day, partner, customer, region, detail), which ``kpis_refresh`` adds its
    deltas to with an upsert on that key (no partner or customer counts as one value, hence the
    ``Coalesce``: ``NULLS NOT DISTINCT`` would leave SQLite without the index).
    """

    metric = models.CharField(max_length=24, choices=Metric.choices)
    day = models.DateField()
    partner = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    region = models.CharField(max_length=60, blank=True)
    detail = models.CharField(max_length=40, blank=True)
    count = models.PositiveIntegerField(default=0)
    hits = models.PositiveIntegerField(default=0)
    seconds_sum = models.FloatField(default=0)
    histogram = models.JSONField(
        default=list, blank=True, help_text="Counts per duration bucket (see histogram.BUCKETS)."
    )

    class Meta:
        ordering = ["metric", "day"]
        indexes = [models.Index(fields=["day", "metric"])]
        constraints = [
            models.UniqueConstraint(
                "metric",
                "day",
                Coalesce("partner", 0),
                Coalesce("customer", 0),
                "region",
                "detail",
                name="unique_rollup_per_bucket",
            ),
        ]
        permissions = [("view_sla_dashboard", "Can see the SLA dashboard and the orders behind its figures")]

    def __str__(self) -> str:
        return f"{self.metric} {self.day}: {self.count}"
