from django.urls import path

from apps.ingest import api

urlpatterns = [
    path("messages/", api.MessageCreateView.as_view(), name="api-messages"),
    path("messages/<int:pk>/", api.MessageDetailView.as_view(), name="api-message"),
    path("messages/replay/", api.MessageReplayView.as_view(), name="api-messages-replay"),
    path("events/", api.EventCreateView.as_view(), name="api-events"),
]
