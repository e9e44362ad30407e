"""Live updates: tell every open dashboard that the KPIs moved."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)
GROUP = "kpis"


def broadcast_kpis_changed() -> None:
    """Best effort: a dashboard that misses a push shows the truth on its next load."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "kpis.changed"})
    except Exception:
        logger.warning("live KPI update not sent", exc_info=True)
