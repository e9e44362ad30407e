"""Admin for predictions: the risk thresholds per customer are configuration; predictions are read-only."""

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from apps.predictions.models import Prediction, RiskThreshold


@admin.register(RiskThreshold)
class RiskThresholdAdmin(admin.ModelAdmin):
    list_display = ["customer", "open_above", "close_below"]
    search_fields = ["customer__code", "customer__name"]
    raw_id_fields = ["customer"]


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["shipment", "stage", "basis", "p50", "late_probability", "as_of"]
    list_filter = ["basis", "stage"]
    search_fields = ["shipment__number", "shipment__tracking_number"]
    list_select_related = ["shipment"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
