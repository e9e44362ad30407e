"""Exception detection as a reaction to an apply (registered in ``settings.TIMELINE_REACTIONS``)."""

from apps.exceptions.services import detect
from apps.timeline.reactions import Phase, Touched, reaction

# Orders a detection looks at together: most of a detection's cost is per run (a statement or two
# a rule), not per order, so a round of a bulk load is better judged in a few large runs.
BATCH = 2000


@reaction(phase=Phase.AFTER_COMMIT, stage="detection")
def detect_on_touched_orders(touched: Touched) -> None:
    """Open and close the cases of the touched orders (and of their shipments)."""
    ids = sorted(touched.order_ids)
    for start in range(0, len(ids), BATCH):
        detect(order_ids=ids[start : start + BATCH])
