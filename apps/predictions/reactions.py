"""Predictions as a reaction to an apply (registered in ``settings.TIMELINE_REACTIONS``, before
exception detection so the at-risk rule reads the new risk)."""

from apps.predictions.services import REFRESH_BATCH, deliveries_learn, predictions_refresh
from apps.timeline.models import Shipment
from apps.timeline.reactions import Phase, Touched, reaction


@reaction(phase=Phase.AFTER_COMMIT, stage="predictions")
def predict_touched_shipments(touched: Touched) -> None:
    """Learn the touched shipments just delivered, then predict again the touched shipments and
    those of the touched orders (a new promise)."""
    ids = set(touched.shipment_ids)
    if touched.order_ids:
        links = Shipment.orders.through.objects.filter(order_id__any=sorted(touched.order_ids))
        ids.update(links.values_list("shipment_id", flat=True))
    ordered = sorted(ids)
    for start in range(0, len(ordered), REFRESH_BATCH):
        batch = ordered[start : start + REFRESH_BATCH]
        deliveries_learn(shipment_ids=batch)
        predictions_refresh(shipment_ids=batch)
