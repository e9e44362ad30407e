from django.urls import path

from apps.timeline import api

urlpatterns = [
    path("orders/", api.OrderListView.as_view(), name="api-orders"),
    path("orders/<int:pk>/", api.OrderDetailView.as_view(), name="api-order-detail"),
]
