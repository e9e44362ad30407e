"""The delivery log pages, and the outbound API under ``/api/v1/`` (one include for both)."""

from django.urls import include, path

from apps.outbound import views

urlpatterns = [
    path("api/v1/", include("apps.outbound.api_urls")),
    path("outbound/", views.subscription_list_view, name="subscription-list"),
    path("outbound/subscriptions/<int:pk>/", views.subscription_detail_view, name="subscription-detail"),
    path("outbound/subscriptions/<int:pk>/replay/", views.deliveries_replay_view, name="deliveries-replay"),
    path("outbound/deliveries/<int:pk>/", views.delivery_detail_view, name="delivery-detail"),
]
