from django.urls import path

from apps.dashboards import views

urlpatterns = [
    path("dashboards/", views.sla_dashboard, name="sla-dashboard"),
    path("dashboards/drill/", views.kpi_drill, name="kpi-drill"),
]
