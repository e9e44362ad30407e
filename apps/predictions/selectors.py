"""Reads: the predictions of an order's shipments, and the latest backtest."""

from dataclasses import dataclass

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
