"""An open order page is told when its order changes, and only then."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from apps.timeline.realtime import ORDER_GROUPS, broadcast_orders_changed, order_group
from controltower.routing import websocket_urlpatterns
from tests.factories import UserFactory

# The consumer checks the person's permission through a fresh database connection: commit the data.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_page_is_refreshed_for_its_own_order_not_for_a_neighbour_in_its_group(django_user_model):
    user = UserFactory(username="agent", permissions=["timeline.view_order"])
    mine, neighbour = 3, 3 + ORDER_GROUPS
    assert order_group(mine) == order_group(neighbour)
    app = URLRouter(websocket_urlpatterns)

    async def scenario() -> tuple[bool, str]:
        page = WebsocketCommunicator(app, f"/ws/orders/{mine}/")
        page.scope["user"] = user
        assert (await page.connect())[0]
        await sync_to_async(broadcast_orders_changed, thread_sensitive=False)([neighbour])
        quiet = await page.receive_nothing(timeout=0.2)
        await sync_to_async(broadcast_orders_changed, thread_sensitive=False)([neighbour, mine, 7])
        message = await page.receive_from(timeout=2)
        await page.disconnect()
        return quiet, message

    quiet, message = async_to_sync(scenario)()

    assert quiet
    assert f"/orders/{mine}/" in message


def test_a_thousand_orders_cost_one_message_per_group(monkeypatch):
    sent = []

    class Layer:
        async def group_send(self, group, message):
            sent.append((group, message["order_ids"]))

    monkeypatch.setattr("apps.timeline.realtime.get_channel_layer", Layer)
    broadcast_orders_changed(range(1000))

    assert len(sent) == ORDER_GROUPS
    assert sorted(i for _, ids in sent for i in ids) == list(range(1000))
