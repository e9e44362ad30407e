"""The delivery log: every subscription at a glance, one subscription's deliveries, one delivery's
attempts; dead letters replayed from here."""

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from apps.dashboards.charts import Series, stacked_columns
from apps.outbound.forms import DeliveryFilterForm, ReplayForm
from apps.outbound.models import Subscription
from apps.outbound.selectors import (
    WINDOW,
    attempts_by_hour,
    delivery_counts,
    delivery_detail,
    delivery_page,
    delivery_rows,
    freshness,
    subscription_activity,
    subscription_deliveries,
)
from apps.outbound.services import deliveries_replay
from controltower.access import role_required
from controltower.http import next_url

VIEW = "outbound.view_subscription"
REPLAY = "outbound.replay_delivery"
DELIVERIES_PER_PAGE = 50
POLL_SECONDS = 5
WINDOW_HOURS = int(WINDOW / timedelta(hours=1))


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
@role_required(VIEW)
def subscription_list_view(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    context = {
        "subscriptions": subscription_activity(now=now),
        "now": now,
        "window_hours": WINDOW_HOURS,
    }
    return render(request, "outbound/subscription_list.html", context)


def _subscription(pk: int) -> Subscription:
    return get_object_or_404(Subscription.objects.select_related("partner", "channel", "endpoint"), pk=pk)


def _deliveries_context(request: HttpRequest, subscription: Subscription, query: dict[str, str]) -> dict:
    """The delivery table of a subscription as ``query`` (status, and a cursor: after or before) asks for it."""
    form = DeliveryFilterForm(query)
    status = form.status_filter()
    deliveries = subscription_deliveries(subscription_id=subscription.pk, status=status)
    page = delivery_page(deliveries, size=DELIVERIES_PER_PAGE, after=query.get("after"), before=query.get("before"))
    kept = {"status": status} if status else {}
    cursor = _cursor(query) if not page.is_first else {}
    return {
        "subscription": subscription,
        "form": form,
        "page": page,
        "rows": delivery_rows(page.items),
        "counts": delivery_counts(subscription_id=subscription.pk),
        "filter_query": urlencode(kept),
        "cursor": cursor,
        "poll_url": _poll_url(subscription, {**kept, **cursor}),
        "poll_seconds": POLL_SECONDS,
        "can_replay": request.user.has_perm(REPLAY),
    }


def _cursor(query: dict[str, str]) -> dict[str, str]:
    """The cursor the page shown was read from, kept by the refresh and a replay."""
    for name in ("before", "after"):
        if query.get(name):
            return {name: query[name]}
    return {}


def _poll_url(subscription: Subscription, params: dict[str, str]) -> str:
    url = reverse("subscription-detail", args=[subscription.pk])
    return f"{url}?{urlencode(params)}" if params else url


@require_GET
@role_required(VIEW)
def subscription_detail_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A subscription's circuit and deliveries; HTMX (the filter and the 5 s refresh) gets the table."""
    subscription = _subscription(pk)
    context = _deliveries_context(request, subscription, request.GET.dict())
    template = "outbound/subscription_detail.html"
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, f"{template}#deliveries", context)
    measured = freshness(subscription_ids=[subscription.pk]).get(subscription.pk)
    return render(request, template, {**context, **_attempts_chart(subscription), "freshness": measured})


def _attempts_chart(subscription: Subscription) -> dict[str, object]:
    hourly = attempts_by_hour(subscription_id=subscription.pk, now=timezone.now())
    series = [
        Series("Delivered", hourly.delivered),
        Series("Failed (retried)", hourly.retried),
        Series("Dead letter", hourly.dead),
    ]
    title = f"Attempts per hour, last {WINDOW_HOURS} hours"
    return {
        "window_hours": WINDOW_HOURS,
        "attempts_total": hourly.total,
        "attempts_chart": stacked_columns(hourly.labels, series, title=title),
    }


@require_GET
@role_required(VIEW)
def delivery_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    detail = delivery_detail(pk)
    if detail is None:
        raise Http404("No such delivery.")
    context = {"detail": detail, "delivery": detail.delivery, "can_replay": request.user.has_perm(REPLAY)}
    return render(request, "outbound/delivery_detail.html", context)


def _replayed_message(count: int) -> str:
    if count == 0:
        return "Nothing to replay: no dead delivery among those."
    noun = "delivery" if count == 1 else "deliveries"
    return f"{count} {noun} queued to send again."


@require_POST
@role_required(REPLAY)
def deliveries_replay_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Send a subscription's dead deliveries again: chosen ones, or all of them.

    HTMX gets the outcome and, out of band, the refreshed table; a plain POST goes back with a message.
    """
    subscription = _subscription(pk)
    form = ReplayForm(request.POST, subscription=subscription)
    errors: list[str] = []
    message = ""
    if form.is_valid():
        message = _replayed_message(deliveries_replay(deliveries=form.deliveries(), actor=request.user))
    else:
        errors = [error for field_errors in form.errors.values() for error in field_errors]
    if not request.htmx:
        for error in errors:
            messages.error(request, error)
        if message:
            messages.success(request, message)
        return redirect(next_url(request, reverse("subscription-detail", args=[subscription.pk])))
    query = {name: request.POST[name] for name in ("status", "after", "before") if request.POST.get(name)}
    context = {
        **_deliveries_context(request, subscription, query),
        "message": message,
        "errors": errors,
        "oob": True,
    }
    return render(request, "outbound/_replay_result.html", context)
