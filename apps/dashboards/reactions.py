"""KPIs as a reaction to an apply (registered in ``settings.TIMELINE_REACTIONS``)."""

from apps.dashboards.services import kpis_refresh_later
from apps.timeline.reactions import Phase, Touched, reaction


@reaction(phase=Phase.AFTER_COMMIT, stage="kpis")
def refresh_touched_kpis(touched: Touched) -> None:
    """One refresh per unit of work, on the bulk queue: the KPI writer's lock never holds up
    the worker that applies critical events."""
    kpis_refresh_later(order_ids=touched.order_ids)
