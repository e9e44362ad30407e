"""``/api/v1/subscriptions/``: who receives which events, for staff with the model permissions;
their deliveries, and replaying dead ones. Partner tokens never reach it.
"""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.outbound.models import Delivery, Subscription
from apps.outbound.selectors import subscription_deliveries, subscription_with_counts
from apps.outbound.serializers import (
    DeliveriesReplayedSerializer,
    DeliveryQuery,
    DeliveryReplayInput,
    DeliverySerializer,
    SecretSerializer,
    SubscriptionCreatedSerializer,
    SubscriptionInput,
    SubscriptionSerializer,
)
from apps.outbound.services import deliveries_replay, subscription_save, subscription_secret_rotate
from apps.partners.authentication import IsPerson

# --- permissions -----------------------------------------------------------------------------------


class SubscriptionPermissions(DjangoModelPermissions):
    """The model permissions, reading included (``view_subscription``)."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class CanChangeSubscriptions(IsPerson):
    def has_permission(self, request: Request, view: object) -> bool:
        return super().has_permission(request, view) and request.user.has_perm("outbound.change_subscription")


class CanReplayDeliveries(IsPerson):
    def has_permission(self, request: Request, view: object) -> bool:
        return super().has_permission(request, view) and request.user.has_perm("outbound.replay_delivery")


# --- views -------------------------------------------------------------------------------------------

INVALID = OpenApiResponse(description="Field errors, as the admin form would name them.")


@extend_schema_view(
    list=extend_schema(
        description="Every subscription, by partner and name.", responses=SubscriptionSerializer(many=True)
    ),
    retrieve=extend_schema(description="One subscription.", responses=SubscriptionSerializer),
    create=extend_schema(
        description="Add a subscription; the answer holds its signing secret, shown this once.",
        request=SubscriptionInput,
        responses={201: SubscriptionCreatedSerializer, 400: INVALID},
    ),
    update=extend_schema(
        description="Replace a subscription's settings (not its secret).",
        request=SubscriptionInput,
        responses={200: SubscriptionSerializer, 400: INVALID},
    ),
    partial_update=extend_schema(
        description="Change some of a subscription's settings.",
        request=SubscriptionInput,
        responses={200: SubscriptionSerializer, 400: INVALID},
    ),
    destroy=extend_schema(description="Remove a subscription and its delivery log.", responses={204: None}),
)
class SubscriptionViewSet(viewsets.ModelViewSet):
    """Subscriptions with their circuit state and deliveries counted by status."""

    permission_classes = [IsPerson, SubscriptionPermissions]
    serializer_class = SubscriptionSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[Subscription]:
        return subscription_with_counts().prefetch_related("customers").order_by("partner__code", "name", "pk")

    def get_permissions(self) -> list:
        if self.action == "rotate_secret":
            return [CanChangeSubscriptions()]
        return super().get_permissions()

    def _read(self, pk: int) -> Subscription:
        return self.get_queryset().get(pk=pk)

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        body = SubscriptionInput(data=request.data)
        body.is_valid(raise_exception=True)
        subscription = subscription_save(subscription=None, data=body.validated_data)
        return Response(SubscriptionCreatedSerializer(self._read(subscription.pk)).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: object, **kwargs: Any) -> Response:
        subscription = self.get_object()
        body = SubscriptionInput(subscription, data=request.data, partial=kwargs.get("partial", False))
        body.is_valid(raise_exception=True)
        subscription_save(subscription=subscription, data=body.validated_data)
        return Response(SubscriptionSerializer(self._read(subscription.pk)).data)

    @extend_schema(request=None, responses=SecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        """Replace the signing secret: deliveries carry a signature with the old one too for the grace period."""
        subscription = self.get_object()
        secret = subscription_secret_rotate(subscription=subscription)
        return Response({"id": subscription.pk, "secret": secret})

    @extend_schema(parameters=[DeliveryQuery], responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        """The subscription's deliveries, newest first, optionally of one status."""
        subscription = self.get_object()
        query = DeliveryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        deliveries = subscription_deliveries(subscription_id=subscription.pk, status=query.validated_data.get("status"))
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryReplayView(APIView):
    """Send dead deliveries again from a fresh set of attempts: chosen ones, or all of a subscription's."""

    permission_classes = [CanReplayDeliveries]

    @extend_schema(
        operation_id="deliveries_replay",
        request=DeliveryReplayInput,
        responses={
            200: DeliveriesReplayedSerializer,
            400: OpenApiResponse(description="Neither ids nor a subscription."),
        },
    )
    def post(self, request: Request) -> Response:
        body = DeliveryReplayInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        deliveries = Delivery.objects.filter(status=Delivery.Status.DEAD)
        if data.get("subscription"):
            deliveries = deliveries.filter(subscription_id=data["subscription"])
        if data.get("ids"):
            deliveries = deliveries.filter(pk__in=data["ids"])
        return Response({"replayed": deliveries_replay(deliveries=deliveries, actor=request.user)})
