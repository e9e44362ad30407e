"""``GET /api/v1/inventory/``: stock per warehouse, SKU and unit, on hand against book."""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from apps.inventory.models import InventoryPosition
from apps.inventory.selectors import position_search
from apps.inventory.serializers import InventoryPositionSerializer, InventoryQuerySerializer
from apps.inventory.views import READ
from controltower.access import person_with


class InventoryListView(generics.ListAPIView):
    """Positions with on hand (the warehouse's), book (the ERP's), their difference, what is
    allocated and what is available to promise; by warehouse, SKU and unit."""

    permission_classes = [person_with(READ)]
    serializer_class = InventoryPositionSerializer
    filter_backends: list = []

    @extend_schema(parameters=[InventoryQuerySerializer])
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[InventoryPosition]:
        query = InventoryQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return position_search(**query.validated_data)
