from django.urls import path

from apps.dashboards.consumers import DashboardConsumer
from apps.exceptions.consumers import HomeConsumer, QueueConsumer
from apps.timeline.consumers import OrderTimelineConsumer

websocket_urlpatterns = [
    path("ws/orders/<int:order_id>/", OrderTimelineConsumer.as_asgi()),
    path("ws/queues/<str:queue>/", QueueConsumer.as_asgi()),
    path("ws/home/", HomeConsumer.as_asgi()),
    path("ws/dashboards/", DashboardConsumer.as_asgi()),
]
