import logging

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.dashboards.health import WINDOW as HEALTH_WINDOW
from apps.dashboards.health import feeds_in_trouble
from apps.exceptions.selectors import amounts_hidden_for, queue_summaries
from apps.exceptions.views import WORK, HtmxHttpRequest, permitted_cases
from apps.timeline.selectors import LATE_WINDOW, late_orders

logger = logging.getLogger(__name__)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers and the database takes a query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any database failure means not healthy
        # The reason (host names, DSN, driver text) goes to the log, never to an unauthenticated caller.
        logger.exception("healthz: the database did not answer")
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


@require_GET
@login_required
def home(request: HtmxHttpRequest) -> HttpResponse:
    """What needs me now: my queues, orders late against their promise, feeds in trouble.

    Each part shows only to people whose role may read it, and each is read with a LIMIT through
    an index, so the page costs the same however many cases, orders and messages there are.
    """
    user = request.user
    now = timezone.now()
    queues = queue_summaries(user, permitted_cases(user, work=True)) if user.has_perm(WORK) else []
    context: dict[str, object] = {"now": now, "queues": queues, "amounts_hidden_for": amounts_hidden_for(user)}
    if user.has_perm("timeline.view_order"):
        context["late_orders"], context["more_late_orders"] = late_orders(now)
        context["late_window_days"] = LATE_WINDOW.days
    if user.has_perm("ingest.view_inboundmessage"):
        context["feeds"] = feeds_in_trouble(now)
        context["health_window_hours"] = int(HEALTH_WINDOW.total_seconds() // 3600)
    return render(request, "home.html#content" if request.htmx else "home.html", context)
