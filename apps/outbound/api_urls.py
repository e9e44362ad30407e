from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.outbound import api

router = SimpleRouter()
# Named api-subscription-*: the delivery log pages own subscription-list and subscription-detail.
router.register("subscriptions", api.SubscriptionViewSet, basename="api-subscription")

urlpatterns = [
    path("deliveries/replay/", api.DeliveryReplayView.as_view(), name="api-deliveries-replay"),
    *router.urls,
]
