"""Reads: the predictions of an order's shipments, and the latest backtest."""

from dataclasses import dataclass

from django.db.models import F, Prefetch, QuerySet

from apps.predictions.models import BacktestReport, Prediction, RiskThreshold
from apps.timeline.models import Order, Shipment
from controltower.keyset import Key


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


# The riskiest first, as keys for keyset pagination; read through the index prediction_by_risk.
RISK_ORDER = [Key("late_probability", descending=True), Key("shipment_id")]


def risk_list(*, min_risk: float | None = None, customer: str = "") -> QuerySet[Prediction]:
    """Shipments on their way with a risk, for the at-risk page: each with its carrier and the
    orders it carries (with their customers), in two queries a page."""
    predictions = predictions_by_risk(min_risk=min_risk, customer=customer or None).filter(
        late_probability__isnull=False
    )
    return predictions.prefetch_related(
        Prefetch("shipment__orders", queryset=Order.objects.select_related("customer").order_by("id"))
    )


def risk_threshold(customer_id: int | None) -> float:
    """The probability above which the customer's orders are at risk (``RiskThreshold``)."""
    configured = RiskThreshold.objects.filter(customer_id=customer_id).values_list("open_above", flat=True).first()
    return RiskThreshold.DEFAULT_OPEN_ABOVE if configured is None else configured


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
