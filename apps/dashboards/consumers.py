import asyncio
from urllib.parse import parse_qsl, urlencode

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.urls import reverse

from apps.dashboards.realtime import GROUP
from apps.dashboards.views import VIEW
from controltower.access import websocket_allows


class DashboardConsumer(AsyncWebsocketConsumer):
    """Refreshes an open SLA dashboard (same filters) when the KPIs move.

    Applies come in bursts: one refresh per ``delay`` seconds at most, always after the last push
    it covers, so the page never misses the final state.
    """

    delay = 1.0

    async def connect(self) -> None:
        if not await websocket_allows(self.scope, VIEW):
            await self.close(code=4403)
            return
        query = parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        self.url = reverse("sla-dashboard") + (f"?{urlencode(query[:50])}" if query else "")
        self.pending: asyncio.Task | None = None
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "url", None):
            await self.channel_layer.group_discard(GROUP, self.channel_name)
        if getattr(self, "pending", None):
            self.pending.cancel()

    async def kpis_changed(self, event: dict) -> None:
        if self.pending is None or self.pending.done():
            self.pending = asyncio.create_task(self._refresh_soon())

    async def _refresh_soon(self) -> None:
        await asyncio.sleep(self.delay)
        await self.send(text_data=render_to_string("dashboards/_live_refresh.html", {"url": self.url}))
