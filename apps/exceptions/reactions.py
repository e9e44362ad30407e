"""Exception detection as a reaction to an apply (registered in ``settings.TIMELINE_REACTIONS``)."""

from apps.exceptions.services import detect
from apps.timeline.reactions import Phase, Touched, reaction

BATCH = 500


@reaction(phase=Phase.AFTER_COMMIT, stage="detection")
def detect_on_touched_orders(touched: Touched) -> None:
    """Open and close the cases of the touched orders (and of their shipments)."""
    ids = sorted(touched.order_ids)
    for start in range(0, len(ids), BATCH):
        detect(order_ids=ids[start : start + BATCH])
