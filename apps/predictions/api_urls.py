from django.urls import path

from apps.predictions import api

urlpatterns = [path("predictions/", api.PredictionListView.as_view(), name="api-predictions")]
