from django.urls import path

from apps.exceptions import views

urlpatterns = [
    path("queues/", views.queue_index, name="case-queues"),
    path("queues/<str:queue>/", views.queue_view, name="case-queue"),
    path("queues/<str:queue>/export.csv", views.queue_export, name="case-queue-export"),
    path("cases/<int:pk>/", views.case_detail_view, name="case-detail"),
    path("cases/actions/", views.case_actions, name="case-actions"),
    path("settings/notifications/", views.notification_settings, name="notification-settings"),
]
