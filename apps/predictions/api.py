"""``GET /api/v1/predictions/``: open shipments' predicted delivery, the riskiest first."""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from apps.predictions.models import Prediction
from apps.predictions.selectors import predictions_by_risk
from apps.predictions.serializers import PredictionQuerySerializer, PredictionSerializer
from apps.predictions.views import READ
from controltower.access import person_with


class PredictionListView(generics.ListAPIView):
    """Predictions of open shipments, the most likely to miss their promise first; filtered by a
    minimum risk, a customer or one order."""

    permission_classes = [person_with(READ)]
    serializer_class = PredictionSerializer
    filter_backends: list = []

    @extend_schema(parameters=[PredictionQuerySerializer])
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Prediction]:
        query = PredictionQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return predictions_by_risk(**query.validated_data)
