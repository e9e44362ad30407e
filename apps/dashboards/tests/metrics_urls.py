from django.urls import path

from apps.dashboards.metrics import metrics_view

urlpatterns = [path("metrics", metrics_view, name="metrics")]
