"""``/api/v1/cases/``: list and read exception cases, and work them (people only, never partners)."""

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.exceptions.models import ExceptionCase
from apps.exceptions.realtime import broadcast_cases_changed_on_commit
from apps.exceptions.selectors import amounts_hidden_for, case_api_list, case_history
from apps.exceptions.serializers import (
    CaseActionSerializer,
    CaseDetailSerializer,
    CaseQuerySerializer,
    CaseSerializer,
)
from apps.exceptions.services import CaseActionError, cases_act
from apps.exceptions.views import VIEW, WORK, permitted_cases
from controltower.access import person_with


class CaseListView(generics.ListAPIView):
    """Exception cases, newest first, filtered by queue, status and rule code."""

    permission_classes = [person_with(VIEW)]
    serializer_class = CaseSerializer
    filter_backends: list = []

    @extend_schema(parameters=[CaseQuerySerializer])
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[ExceptionCase]:
        query = CaseQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return case_api_list(cases=permitted_cases(self.request.user), **query.validated_data)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "amounts_hidden_for": amounts_hidden_for(self.request.user)}


def _case(request: Request, pk: int) -> ExceptionCase:
    return get_object_or_404(case_history(case_api_list(cases=permitted_cases(request.user))), pk=pk)


def _case_data(request: Request, pk: int) -> dict:
    context = {"amounts_hidden_for": amounts_hidden_for(request.user)}
    return CaseDetailSerializer(_case(request, pk), context=context).data


class CaseDetailView(APIView):
    """One case with its history."""

    permission_classes = [person_with(VIEW)]

    @extend_schema(responses=CaseDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(_case_data(request, pk))


class CaseActionView(APIView):
    """Work one case: assign it to yourself, acknowledge, comment, resolve or dismiss (with a reason)."""

    permission_classes = [person_with(WORK)]

    @extend_schema(
        request=CaseActionSerializer,
        responses={
            200: CaseDetailSerializer,
            400: OpenApiResponse(description="Invalid action, or a missing reason or note."),
            404: OpenApiResponse(description="No such case."),
            409: OpenApiResponse(description="The action does not apply: the case is already closed."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        case = _case(request, pk)
        body = CaseActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        action = data["action"]
        cases = permitted_cases(request.user, work=True).filter(pk=case.pk)
        if not cases.exists():
            raise PermissionDenied(f"Case #{case.pk} is in a queue your role does not work.")
        try:
            done = cases_act(
                action=action,
                cases=cases,
                actor=request.user,
                reason_code=data.get("reason_code", ""),
                note=data.get("note", ""),
            )
        except CaseActionError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        if not done:
            return Response(
                {"detail": f"Case #{case.pk} is {case.get_status_display().lower()}: nothing to {action}."},
                status=status.HTTP_409_CONFLICT,
            )
        broadcast_cases_changed_on_commit([case.queue])
        return Response(_case_data(request, pk))
