"""Admin for inventory: positions and the ledger are read-only (the feeds write them); a feed's
snapshot cadence and the tolerances of the stock mismatch rule are set here."""

from django.contrib import admin

from apps.inventory.models import InventoryPosition, LedgerEntry, StockFeed, StockTolerance
from apps.timeline.admin import ReadMostlyAdmin


@admin.register(InventoryPosition)
class InventoryPositionAdmin(ReadMostlyAdmin):
    list_display = ("warehouse", "sku", "uom", "quantity", "book_quantity", "as_of", "book_as_of", "updated_at")
    list_filter = (("warehouse", admin.RelatedOnlyFieldListFilter), "uom")
    list_select_related = ("warehouse",)
    search_fields = ("sku", "warehouse__code")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadMostlyAdmin):
    list_display = ("occurred_at", "warehouse", "sku", "uom", "view", "kind", "quantity", "reason", "event_id")
    list_filter = ("view", "kind")
    list_select_related = ("warehouse",)
    search_fields = ("sku", "event_id")
    show_full_result_count = False


@admin.register(StockFeed)
class StockFeedAdmin(admin.ModelAdmin):
    list_display = ("warehouse", "view", "last_snapshot_at", "full_snapshot_at", "cadence")
    list_select_related = ("warehouse",)
    fields = ("warehouse", "view", "last_snapshot_at", "full_snapshot_at", "cadence")
    readonly_fields = ("warehouse", "view", "last_snapshot_at", "full_snapshot_at")

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(StockTolerance)
class StockToleranceAdmin(admin.ModelAdmin):
    list_display = ("warehouse", "sku", "units", "percent")
    list_select_related = ("warehouse",)
    search_fields = ("sku", "warehouse__code")
