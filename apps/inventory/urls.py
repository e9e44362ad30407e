from django.urls import path

from apps.inventory import views

urlpatterns = [
    path("inventory/", views.inventory_page, name="inventory"),
    path("inventory/export.csv", views.inventory_export, name="inventory-export"),
    path("inventory/<int:pk>/", views.position_page, name="inventory-position"),
]
