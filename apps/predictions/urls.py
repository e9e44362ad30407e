from django.urls import path

from apps.predictions import views

urlpatterns = [
    path("orders/<int:order_id>/prediction/", views.order_prediction, name="order-prediction"),
    path("shipments/at-risk/", views.risk_page, name="shipments-at-risk"),
    path("dashboards/predictions/", views.backtest_page, name="prediction-backtest"),
]
