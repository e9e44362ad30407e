from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.urls import reverse

from apps.timeline.realtime import order_group
from apps.timeline.views import VIEW
from controltower.access import websocket_allows


class OrderTimelineConsumer(AsyncWebsocketConsumer):
    """Pushes a refresh trigger to an open order timeline page when the order changes.

    The push carries no data: the page re-reads itself through the order page, which shows what
    the person's role allows (amounts included).
    """

    async def connect(self) -> None:
        if not await websocket_allows(self.scope, VIEW):
            await self.close(code=4403)
            return
        self.order_id = int(self.scope["url_route"]["kwargs"]["order_id"])
        self.group = order_group(self.order_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def orders_changed(self, event: dict) -> None:
        if self.order_id not in event["order_ids"]:
            return  # another order of the same group
        url = reverse("order-detail", args=[self.order_id])
        await self.send(text_data=render_to_string("timeline/_live_refresh.html", {"url": url}))
