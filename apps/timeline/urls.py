from django.urls import path

from apps.timeline import views

urlpatterns = [
    path("search/", views.search, name="search"),
    path("orders/", views.order_list_view, name="order-list"),
    path("orders/<int:pk>/", views.order_detail, name="order-detail"),
]
