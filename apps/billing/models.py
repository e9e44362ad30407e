from django.db import models
from django.db.models import Q

from apps.partners.models import Partner
from apps.timeline.models import Order, Shipment


class FreightCharge(models.Model):
    """A carrier's charge for a shipment, from posting through audit to settlement."""

    class Status(models.TextChoices):
        POSTED = "posted", "Posted"
        VALIDATED = "validated", "Validated"
        DISPUTED = "disputed", "Disputed"
        SETTLED = "settled", "Settled"

    number = models.CharField(max_length=100, help_text="The carrier's freight bill number.")
    carrier = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="freight_charges"
    )
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="freight_charges")
    amount = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    quoted_amount = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.POSTED)
    posted_at = models.DateTimeField(null=True, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    disputed_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["posted_at", "id"]
        constraints = [models.UniqueConstraint(fields=["shipment", "number"], name="unique_freight_charge")]
        indexes = [
            models.Index(fields=["posted_at"], condition=Q(settled_at__isnull=True), name="freight_unsettled"),
        ]
        # Without it a person sees that a charge was posted, disputed or settled, never how much.
        permissions = [("view_freight_amounts", "Can see freight charge amounts")]

    def __str__(self) -> str:
        return f"Freight {self.number}"


class Invoice(models.Model):
    class Status(models.TextChoices):
        GENERATED = "generated", "Generated"
        HELD = "held", "Held"
        RELEASED = "released", "Released"
        POSTED = "posted", "Posted"

    number = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="invoices")
    amount = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.GENERATED)
    hold_reason = models.CharField(max_length=200, blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)
    held_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["generated_at", "id"]
        indexes = [models.Index(fields=["status"])]
        permissions = [
            ("release_invoice", "Can release a held invoice"),
            ("trigger_invoice", "Can invoice an order by hand"),
            # Without it a person sees that an order was invoiced, held or posted, never how much.
            ("view_invoice_amounts", "Can see invoice amounts"),
        ]

    def __str__(self) -> str:
        return self.number


class ReturnAuthorization(models.Model):
    class Status(models.TextChoices):
        AUTHORIZED = "authorized", "Authorized"
        RECEIVED = "received", "Received"

    number = models.CharField(max_length=100, unique=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="returns")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.AUTHORIZED)
    authorized_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    lines = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["authorized_at", "id"]

    def __str__(self) -> str:
        return self.number


class InvoiceRule(models.Model):
    """When a customer's orders are invoiced: the condition, the granularity and the tolerance."""

    class Trigger(models.TextChoices):
        SHIP_CONFIRMATION = "ship_confirmation", "On ship confirmation"
        PROOF_OF_DELIVERY = "proof_of_delivery", "On proof of delivery"
        POD_AND_FREIGHT_VALIDATED = "pod_and_freight_validated", "On proof of delivery with freight validated"

    class Granularity(models.TextChoices):
        PER_SHIPMENT = "per_shipment", "One invoice per shipment"
        WHEN_COMPLETE = "when_complete", "One invoice when the order is complete"

    customer = models.OneToOneField(
        Partner, on_delete=models.CASCADE, related_name="invoice_rule", limit_choices_to={"kind": "customer"}
    )
    trigger = models.CharField(max_length=30, choices=Trigger.choices, default=Trigger.PROOF_OF_DELIVERY)
    granularity = models.CharField(max_length=20, choices=Granularity.choices, default=Granularity.WHEN_COMPLETE)
    quantity_tolerance = models.DecimalField(
        max_digits=6,
        decimal_places=4,
        default=0,
        help_text="Accepted difference between shipped and ordered quantity, as a fraction (0.02 = 2 %).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["customer__code"]

    def __str__(self) -> str:
        return f"{self.customer.code}: {self.get_trigger_display()}, {self.get_granularity_display().lower()}"
