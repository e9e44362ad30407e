"""Stock per warehouse, SKU and unit: a ledger of what each feed reported, and positions kept from it.

Two views of one position are kept apart: the warehouse's on-hand (its WMS) and the ERP's book
stock. Each view is a *count* (the latest snapshot naming the position, or a full snapshot of the
warehouse that omitted it, which counts zero) plus the movements reported after that count.
Quantities in different units are different positions: they are compared, never converted.
"""

from datetime import timedelta
from decimal import Decimal

from django.db import models
from django.db.models import Q

from apps.partners.models import Partner
from apps.timeline.events import normalize_reference
from apps.timeline.models import Order


class StockView(models.TextChoices):
    ON_HAND = "on_hand", "On hand (warehouse)"
    BOOK = "book", "Book (ERP)"


class EntryKind(models.TextChoices):
    SNAPSHOT = "snapshot", "Snapshot"
    MOVEMENT = "movement", "Movement"


class CountRank(models.IntegerChoices):
    """Of two counts at the same time, a line naming the position beats a full snapshot omitting it."""

    OMITTED = 0, "Omitted from a full snapshot"
    REPORTED = 1, "Reported"


class LedgerEntry(models.Model):
    """One line of one inventory event, as reported: a counted level (snapshot) or a signed change."""

    warehouse = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    sku = models.CharField(max_length=100)
    uom = models.CharField(max_length=10)
    view = models.CharField(max_length=8, choices=StockView.choices)
    kind = models.CharField(max_length=8, choices=EntryKind.choices)
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    occurred_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)
    event_id = models.CharField(max_length=200)
    line = models.PositiveIntegerField()
    source_partner = models.ForeignKey(Partner, null=True, on_delete=models.PROTECT, related_name="+")
    source_message_id = models.BigIntegerField(null=True, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["occurred_at", "event_id", "line"]
        constraints = [
            models.UniqueConstraint(fields=["source_partner", "event_id", "line"], name="unique_ledger_line"),
        ]
        indexes = [
            # A count's movements after it, and one position's history.
            models.Index(fields=["warehouse", "sku", "uom", "view", "occurred_at"], name="ledger_position_time"),
        ]

    def __str__(self) -> str:
        return f"{self.warehouse_id} {self.sku} {self.kind} {self.quantity} {self.uom}"


class InventoryPosition(models.Model):
    """Stock of one SKU in one unit at one warehouse: on hand (WMS) and book (ERP)."""

    warehouse = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="inventory_positions")
    sku = models.CharField(max_length=100)
    uom = models.CharField(max_length=10, default="EA")

    quantity = models.DecimalField("on hand", max_digits=14, decimal_places=3, null=True, blank=True)
    counted_quantity = models.DecimalField(max_digits=14, decimal_places=3, default=Decimal(0))
    counted_at = models.DateTimeField(null=True, blank=True)
    counted_rank = models.SmallIntegerField(choices=CountRank.choices, default=CountRank.OMITTED)
    counted_event = models.CharField(max_length=200, blank=True)
    moved = models.DecimalField(max_digits=14, decimal_places=3, default=Decimal(0))
    as_of = models.DateTimeField(null=True, blank=True, help_text="The latest on-hand report applied.")

    book_quantity = models.DecimalField("book", max_digits=14, decimal_places=3, null=True, blank=True)
    book_counted_quantity = models.DecimalField(max_digits=14, decimal_places=3, default=Decimal(0))
    book_counted_at = models.DateTimeField(null=True, blank=True)
    book_counted_rank = models.SmallIntegerField(choices=CountRank.choices, default=CountRank.OMITTED)
    book_counted_event = models.CharField(max_length=200, blank=True)
    book_moved = models.DecimalField(max_digits=14, decimal_places=3, default=Decimal(0))
    book_as_of = models.DateTimeField(null=True, blank=True, help_text="The latest book-stock report applied.")

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["warehouse_id", "sku", "uom"]
        constraints = [models.UniqueConstraint(fields=["warehouse", "sku", "uom"], name="unique_inventory_position")]
        indexes = [models.Index(fields=["sku", "warehouse"], name="inventory_position_sku")]

    def __str__(self) -> str:
        return f"{self.warehouse_id} {self.sku}: {self.quantity} {self.uom}"


class StockFeed(models.Model):
    """What one warehouse's stock feed (on hand or book) last reported, and how often it should."""

    warehouse = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="stock_feeds")
    view = models.CharField(max_length=8, choices=StockView.choices)
    last_snapshot_at = models.DateTimeField(null=True, blank=True)
    full_snapshot_at = models.DateTimeField(null=True, blank=True)
    full_snapshot_event = models.CharField(max_length=200, blank=True)
    cadence = models.DurationField(
        default=timedelta(days=1), help_text="How often a snapshot is expected (e.g. 1 00:00:00 for daily)."
    )

    class Meta:
        ordering = ["warehouse", "view"]
        constraints = [models.UniqueConstraint(fields=["warehouse", "view"], name="unique_stock_feed")]

    def __str__(self) -> str:
        return f"{self.warehouse_id} {self.view}"


class Allocation(models.Model):
    """A released order's line not shipped yet: stock promised, at the warehouse the release named."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="+")
    sku = models.CharField(max_length=100)
    uom = models.CharField(max_length=10)
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    warehouse = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "sku", "uom"], name="unique_allocation")]
        indexes = [
            models.Index(fields=["sku", "uom", "warehouse"], name="allocation_sku"),
            models.Index(fields=["warehouse"], condition=Q(warehouse__isnull=False), name="allocation_warehouse"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.sku} x {self.quantity}"


class StockTolerance(models.Model):
    """How far on hand may differ from book before it is a mismatch: within ``units`` or within
    ``percent`` of book stock. The most specific row for a position applies (warehouse and SKU,
    then SKU, then warehouse); without one, the stock mismatch rule's tolerance (a fraction)."""

    warehouse = models.ForeignKey(Partner, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    sku = models.CharField(max_length=100, blank=True)
    units = models.DecimalField(max_digits=14, decimal_places=3, default=Decimal(0))
    percent = models.DecimalField(
        max_digits=6, decimal_places=4, default=Decimal(0), help_text="A fraction of book stock, e.g. 0.02 for 2 %."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["warehouse", "sku"], name="unique_stock_tolerance"),
            models.CheckConstraint(condition=Q(warehouse__isnull=False) | ~Q(sku=""), name="stock_tolerance_scoped"),
        ]

    def __str__(self) -> str:
        return f"{self.warehouse_id or '*'} {self.sku or '*'}: {self.units} units or {self.percent:%}"

    def clean(self) -> None:
        """SKUs are compared as positions keep them: case and spaces ignored."""
        self.sku = normalize_reference(self.sku)


class StockAccuracy(models.Model):
    """One warehouse's inventory accuracy on one day, as last measured that day: of the positions
    both the warehouse and the ERP report, how many agree within tolerance; and how fresh its
    on-hand snapshot was against its cadence."""

    day = models.DateField()
    warehouse = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="+")
    compared = models.PositiveIntegerField()
    within = models.PositiveIntegerField()
    last_snapshot_at = models.DateTimeField(null=True, blank=True)
    snapshot_late = models.BooleanField(default=False)
    measured_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "stock accuracy"
        ordering = ["-day", "warehouse"]
        constraints = [models.UniqueConstraint(fields=["day", "warehouse"], name="unique_stock_accuracy")]

    def __str__(self) -> str:
        return f"{self.day} {self.warehouse_id}: {self.within}/{self.compared}"

    @property
    def share(self) -> float | None:
        return self.within / self.compared if self.compared else None
