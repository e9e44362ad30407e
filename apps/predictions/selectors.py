"""Reads: the predictions of an order's shipments, and the latest backtest."""

from dataclasses import dataclass

from django.db.models import F, QuerySet

from apps.predictions.models import BacktestReport, Prediction
from apps.timeline.models import Shipment


@dataclass(frozen=True)
class ShipmentPrediction:
    shipment: Shipment
    prediction: Prediction | None


def order_predictions(order_id: int) -> list[ShipmentPrediction]:
    """Each shipment of the order with its prediction (none once delivered), in one query."""
    shipments = (
        Shipment.objects.filter(orders=order_id).select_related("carrier", "prediction").order_by("manifested_at", "id")
    )
    return [ShipmentPrediction(shipment, getattr(shipment, "prediction", None)) for shipment in shipments]


def latest_backtest() -> BacktestReport | None:
    return BacktestReport.objects.order_by("-created_at").first()


def predictions_by_risk(
    *, min_risk: float | None = None, customer: str | None = None, order: int | None = None
) -> QuerySet[Prediction]:
    """Predictions the most likely to miss the promise first (those without a risk last)."""
    predictions = Prediction.objects.select_related("shipment__carrier")
    if min_risk is not None:
        predictions = predictions.filter(late_probability__gte=min_risk)
    if customer:
        carried = Shipment.orders.through.objects.filter(order__customer__code=customer).values("shipment_id")
        predictions = predictions.filter(shipment_id__in=carried)
    if order is not None:
        predictions = predictions.filter(
            shipment_id__in=Shipment.orders.through.objects.filter(order_id=order).values("shipment_id")
        )
    return predictions.order_by(F("late_probability").desc(nulls_last=True), "shipment_id")
