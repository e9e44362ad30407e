from django.urls import path

from apps.dashboards import integration_views as views

urlpatterns = [
    path("integration/", views.integration_health_view, name="integration-health"),
    path("integration/dead-letters/", views.dead_letters_view, name="dead-letters"),
    path("integration/replay/", views.messages_replay_view, name="messages-replay"),
    path("messages/<int:pk>/trace/", views.message_trace_view, name="message-trace"),
]
