"""Live updates: tell every open timeline page of an order that the order changed."""

import logging
from collections import defaultdict
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.timeline.reactions import Phase, Touched, reaction

logger = logging.getLogger(__name__)


# Orders share a few groups: an apply touching thousands of orders sends one message per group
# it touched, not one per order, and each page ignores the ids that are not its own.
ORDER_GROUPS = 64


def order_group(order_id: int) -> str:
    return f"orders-{order_id % ORDER_GROUPS}"


def broadcast_orders_changed(order_ids: Iterable[int]) -> None:
    """Best effort: a live page that misses a push still shows the truth on its next load."""
    layer = get_channel_layer()
    if layer is None:
        return
    by_group: dict[str, list[int]] = defaultdict(list)
    for order_id in order_ids:
        by_group[order_group(order_id)].append(order_id)

    async def send_all() -> None:
        for group, ids in by_group.items():
            await layer.group_send(group, {"type": "orders.changed", "order_ids": ids})

    try:
        async_to_sync(send_all)()
    except Exception:
        logger.warning("live update for %d orders not sent", sum(map(len, by_group.values())), exc_info=True)


@reaction(phase=Phase.AFTER_COMMIT, stage="live")
def push_live_updates(touched: Touched) -> None:
    broadcast_orders_changed(sorted(touched.order_ids))
