from django.urls import path

from apps.outbound import tracking_views

urlpatterns = [
    path("track/<str:token>/", tracking_views.track, name="track"),
    path(
        "orders/<int:order_id>/tracking-links/", tracking_views.order_tracking_links_view, name="order-tracking-links"
    ),
    path(
        "orders/<int:order_id>/tracking-links/new/",
        tracking_views.tracking_link_create_view,
        name="tracking-link-create",
    ),
    path("tracking-links/<int:pk>/revoke/", tracking_views.tracking_link_revoke_view, name="tracking-link-revoke"),
]
