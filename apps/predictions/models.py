from django.db import models
from django.db.models import F, Q

from apps.partners.models import Partner
from apps.predictions.estimator import Stage
from apps.timeline.models import Order, Shipment


class TransitProfile(models.Model):
    """The transit times of one group's recent deliveries (a lane with its carrier, a carrier, or
    everything), counted from pickup or from out for delivery: the model the predictions read."""

    key = models.CharField(max_length=400)
    anchor = models.CharField(max_length=20)
    samples = models.JSONField(
        default=list, help_text="[wall hours, working hours, at a weekend] per delivery, oldest first."
    )
    deliveries = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "anchor"], name="unique_transit_profile")]

    def __str__(self) -> str:
        return f"{self.key} from {self.anchor}: {self.deliveries} deliveries"


class Prediction(models.Model):
    """The predicted delivery of one open shipment, with its range, risk and reasons."""

    class Basis(models.TextChoices):
        MODEL = "model", "Our model"
        CARRIER = "carrier_estimate", "Carrier's estimate (too few deliveries)"
        NONE = "none", "Nothing to go on"

    shipment = models.OneToOneField(Shipment, on_delete=models.CASCADE, related_name="prediction")
    as_of = models.DateTimeField()
    stage = models.CharField(max_length=20, blank=True)
    basis = models.CharField(max_length=20, choices=Basis.choices)
    p10 = models.DateTimeField(null=True, blank=True)
    p50 = models.DateTimeField(null=True, blank=True)
    p90 = models.DateTimeField(null=True, blank=True)
    late_probability = models.FloatField(null=True, blank=True)
    promised_at = models.DateTimeField(null=True, blank=True)
    carrier_estimate_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveIntegerField(default=0)
    reasons = models.JSONField(default=list)

    class Meta:
        indexes = [
            # The riskiest first, as the at-risk list pages through them (keyset on risk, shipment).
            models.Index(
                F("late_probability").desc(),
                F("shipment"),
                condition=Q(late_probability__isnull=False),
                name="prediction_by_risk",
            )
        ]

    def __str__(self) -> str:
        return f"{self.shipment_id}: {self.p50:%Y-%m-%d %H:%M}" if self.p50 else f"{self.shipment_id}: none"

    @property
    def stage_label(self) -> str:
        return Stage.LABELS.get(self.stage, "")


class OrderRisk(models.Model):
    """An order's probability of arriving after its promise: the highest of its open shipments'.

    The order is late when any of its shipments is. The highest of their probabilities, rather than
    1 - Π(1 - p), because the shipments of one order mostly leave the same warehouse on the same
    day with the same carrier on the same lane, so their delays go together rather than add up:
    taken as independent, an order of ten shipments at 10 % each would read 65 %. The riskiest
    shipment is what a person acts on, and the case names it.
    """

    order = models.OneToOneField(Order, primary_key=True, on_delete=models.CASCADE, related_name="risk")
    late_probability = models.FloatField()
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="+", help_text="The riskiest.")

    class Meta:
        indexes = [
            # The order list sorted by risk pages through this (keyset on risk, order, both descending).
            models.Index(F("late_probability").desc(), F("order").desc(), name="order_risk_by_risk")
        ]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.late_probability:.0%}"


class RiskThreshold(models.Model):
    """When a customer's order is at risk: a case opens above ``open_above`` and closes once the
    probability falls below ``close_below`` (lower, so a risk wavering at the line does not open
    and close a case on every scan)."""

    DEFAULT_OPEN_ABOVE = 0.5
    DEFAULT_CLOSE_BELOW = 0.3

    customer = models.OneToOneField(
        Partner, on_delete=models.CASCADE, related_name="risk_threshold", limit_choices_to={"kind": "customer"}
    )
    open_above = models.FloatField(help_text="Probability of arriving after the promise, e.g. 0.5.")
    close_below = models.FloatField(help_text="Below this the case closes, e.g. 0.3.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(close_below__gte=0, open_above__lte=1, close_below__lte=models.F("open_above")),
                name="risk_threshold_ordered",
                violation_error_message="Need 0 ≤ close below ≤ open above ≤ 1.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer}: open above {self.open_above:.0%}, close below {self.close_below:.0%}"


class BacktestReport(models.Model):
    """The figures of one backtest run (``manage.py eta backtest``), shown on the dashboard."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    since = models.DateTimeField(null=True, blank=True)
    figures = models.JSONField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Backtest of {self.created_at:%Y-%m-%d %H:%M}"
