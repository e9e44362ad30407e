"""Live updates: tell every open timeline page of an order that the order changed."""

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.timeline.reactions import Phase, Touched, reaction

logger = logging.getLogger(__name__)


def order_group(order_id: int) -> str:
    return f"order-{order_id}"


def broadcast_orders_changed(order_ids: Iterable[int]) -> None:
    """Best effort: a live page that misses a push still shows the truth on its next load."""
    layer = get_channel_layer()
    if layer is None:
        return
    ids = list(order_ids)

    async def send_all() -> None:
        for order_id in ids:
            await layer.group_send(order_group(order_id), {"type": "order.changed", "order_id": order_id})

    try:
        async_to_sync(send_all)()
    except Exception:
        logger.warning("live update for orders %s not sent", ids[:10], exc_info=True)


@reaction(phase=Phase.AFTER_COMMIT, stage="live")
def push_live_updates(touched: Touched) -> None:
    broadcast_orders_changed(sorted(touched.order_ids))
