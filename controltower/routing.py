from django.urls import path

from apps.timeline.consumers import OrderTimelineConsumer

websocket_urlpatterns = [
    path("ws/orders/<int:order_id>/", OrderTimelineConsumer.as_asgi()),
]
