"""The public tracking page, and the staff fragment that creates and revokes an order's links."""

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from apps.outbound.models import TrackingLink
from apps.outbound.tracking import (
    MAX_DAYS,
    order_tracking_links,
    tracking_link_create,
    tracking_link_resolve,
    tracking_link_revoke,
    tracking_link_viewed,
    tracking_page,
)
from apps.timeline.models import Order
from controltower.access import role_required

# A link is a secret: never cached, never indexed, never leaked to another site in a Referer.
PUBLIC_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
}


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class LinkForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=MAX_DAYS, label="Valid for (days)")


@require_GET
def track(request: HttpRequest, token: str) -> HttpResponse:
    """No sign-in. Unknown, revoked and expired tokens get the same 404 page, with nothing in it."""
    link = tracking_link_resolve(token)
    if link is None:
        response = render(request, "outbound/track.html", {"page": None}, status=404)
    else:
        tracking_link_viewed(link=link)
        page = tracking_page(link)
        with timezone.override(page.time_zone):
            response = render(request, "outbound/track.html", {"page": page})
    for header, value in PUBLIC_HEADERS.items():
        response[header] = value
    return response


@require_GET
@role_required("outbound.view_trackinglink")
def order_tracking_links_view(request: HttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=order_id)
    return _fragment(request, order, LinkForm(initial={"days": settings.TRACKING_LINK_DAYS}))


@require_POST
@role_required("outbound.add_trackinglink")
def tracking_link_create_view(request: HtmxHttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=order_id)
    form = LinkForm(request.POST)
    if not form.is_valid():
        return _fragment(request, order, form)
    link = tracking_link_create(order=order, actor=request.user, days=form.cleaned_data["days"])
    if not request.htmx:
        return redirect("order-detail", pk=order.pk)
    return _fragment(request, order, LinkForm(initial={"days": settings.TRACKING_LINK_DAYS}), created=link)


@require_POST
@role_required("outbound.change_trackinglink")
def tracking_link_revoke_view(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    link = get_object_or_404(TrackingLink.objects.select_related("order"), pk=pk)
    tracking_link_revoke(link=link, actor=request.user)
    if not request.htmx:
        return redirect("order-detail", pk=link.order_id)
    return _fragment(request, link.order, LinkForm(initial={"days": settings.TRACKING_LINK_DAYS}))


def _fragment(request: HttpRequest, order: Order, form: LinkForm, created: TrackingLink | None = None) -> HttpResponse:
    context = {
        "order": order,
        "rows": order_tracking_links(order.pk),
        "form": form,
        "created": created,
        "can_add": request.user.has_perm("outbound.add_trackinglink"),
        "can_revoke": request.user.has_perm("outbound.change_trackinglink"),
    }
    return render(request, "outbound/_tracking_links.html", context)
