from urllib.parse import parse_qsl, urlencode

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.urls import reverse

from apps.exceptions.models import Queue
from apps.exceptions.realtime import queue_group
from apps.exceptions.roles import queues_of
from apps.exceptions.selectors import MINE
from apps.exceptions.views import VIEW, WORK
from controltower.access import websocket_allows


class QueueConsumer(AsyncWebsocketConsumer):
    """Pushes a refresh trigger to an open queue page when cases of its queue change.

    ``/ws/queues/<queue>/?<the page's query string>``: the refresh re-reads the page with the same
    filters. "My cases" may span every queue, so it listens to all of them.
    """

    async def connect(self) -> None:
        if not await websocket_allows(self.scope, VIEW):
            await self.close(code=4403)
            return
        self.queue = self.scope["url_route"]["kwargs"]["queue"]
        if self.queue != MINE and self.queue not in Queue.values:
            await self.close(code=4404)
            return
        self.groups_joined = [queue_group(q) for q in (Queue.values if self.queue == MINE else [self.queue])]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        query = parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        self.query = urlencode(query[:50])
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def cases_changed(self, event: dict) -> None:
        url = reverse("case-queue", args=[self.queue])
        if self.query:
            url = f"{url}?{self.query}"
        await self.send(text_data=render_to_string("exceptions/_live_refresh.html", {"url": url}))


class HomeConsumer(AsyncWebsocketConsumer):
    """Pushes a refresh trigger to an open home page when cases of the person's queues change.

    ``/ws/home/``: for people who work a queue (the home page shows their queues); the refresh
    re-reads the page's content, so counts and oldest cases stay true without a reload.
    """

    async def connect(self) -> None:
        if not await websocket_allows(self.scope, WORK):
            await self.close(code=4403)
            return
        queues = await database_sync_to_async(queues_of)(self.scope["user"])
        self.groups_joined = [queue_group(queue) for queue in sorted(queues)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def cases_changed(self, event: dict) -> None:
        await self.send(text_data=render_to_string("exceptions/_home_refresh.html", {"url": reverse("home")}))
