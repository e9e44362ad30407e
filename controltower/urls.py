from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.dashboards.metrics import metrics_view
from apps.ingest import views as ingest_views
from controltower import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file, so the page runs under our CSP.
    path(
        "api/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html")),
        name="api-docs",
    ),
    path("api/v1/", include("apps.timeline.api_urls")),
    path("api/v1/", include("apps.ingest.api_urls")),
    path("api/v1/", include("apps.exceptions.api_urls")),
    path("api/v1/", include("apps.predictions.api_urls")),
    path("api/v1/", include("apps.inventory.api_urls")),
    path("hooks/<str:partner>/<str:channel>/", ingest_views.webhook, name="webhook"),
    path("", include("apps.timeline.urls")),
    path("", include("apps.exceptions.urls")),
    path("", include("apps.dashboards.urls")),
    path("", include("apps.dashboards.integration_urls")),
    path("", include("apps.outbound.tracking_urls")),
    path("", include("apps.outbound.urls")),
    path("", include("apps.predictions.urls")),
    path("", include("apps.inventory.urls")),
]
