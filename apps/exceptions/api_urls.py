from django.urls import path

from apps.exceptions import api

urlpatterns = [
    path("cases/", api.CaseListView.as_view(), name="api-cases"),
    path("cases/<int:pk>/", api.CaseDetailView.as_view(), name="api-case-detail"),
    path("cases/<int:pk>/actions/", api.CaseActionView.as_view(), name="api-case-actions"),
]
