"""Live updates: tell every open queue page that cases of its queue opened, changed or closed."""

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def queue_group(queue: str) -> str:
    return f"queue-{queue}"


def broadcast_cases_changed(queues: Iterable[str]) -> None:
    """Best effort: a live page that misses a push still shows the truth on its next load."""
    layer = get_channel_layer()
    names = sorted(set(queues))
    if layer is None or not names:
        return

    async def send_all() -> None:
        for queue in names:
            await layer.group_send(queue_group(queue), {"type": "cases.changed", "queue": queue})

    try:
        async_to_sync(send_all)()
    except Exception:
        logger.warning("live update for queues %s not sent", names, exc_info=True)


def broadcast_cases_changed_on_commit(queues: Iterable[str]) -> None:
    """``broadcast_cases_changed`` once the current transaction commits (at once outside one)."""
    names = sorted(set(queues))
    if names:
        transaction.on_commit(lambda: broadcast_cases_changed(names))
