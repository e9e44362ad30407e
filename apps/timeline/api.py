"""``GET /api/v1/orders/?ref=`` (orders a reference resolves to) and ``GET /api/v1/orders/<pk>/``."""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.billing.visibility import Amounts
from apps.timeline.selectors import OrderMatch, find_orders, order_timeline
from apps.timeline.serializers import (
    OrderMatchSerializer,
    OrderQuerySerializer,
    OrderTimelineSerializer,
    timeline_data,
)
from apps.timeline.views import VIEW
from controltower.access import person_with


class OrderListView(generics.ListAPIView):
    """Orders that a reference resolves to, with how each matched and all their references."""

    permission_classes = [person_with(VIEW)]
    serializer_class = OrderMatchSerializer
    filter_backends: list = []

    @extend_schema(parameters=[OrderQuerySerializer])
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> list[OrderMatch]:
        query = OrderQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return find_orders(query.validated_data["ref"], with_references=True)


class OrderDetailView(APIView):
    """The full timeline of one order: the same document as ``manage.py timeline REF --json``,
    without the freight or invoice amounts the caller's role may not see."""

    permission_classes = [person_with(VIEW)]

    @extend_schema(responses=OrderTimelineSerializer)
    def get(self, request: Request, pk: int) -> Response:
        timeline = order_timeline(pk)
        if timeline is None:
            raise Http404
        return Response(timeline_data(timeline, amounts=Amounts.of(request.user)))
