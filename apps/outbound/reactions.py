"""Outbound's reaction to an apply (registered in ``settings.TIMELINE_REACTIONS``)."""

from apps.outbound.services import events_publish
from apps.timeline.reactions import Phase, Touched, reaction


@reaction(phase=Phase.IN_TRANSACTION, stage="outbox")
def write_outbox(touched: Touched) -> None:
    """The transactional outbox: a delivery per subscriber, committed with the milestones."""
    events_publish(touched.milestones)
