from django.urls import path

from apps.inventory import api

urlpatterns = [path("inventory/", api.InventoryListView.as_view(), name="api-inventory")]
