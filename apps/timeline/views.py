"""Customer-service pages: search by any reference, the order list and the order timeline.

Every role reads timelines (``timeline.view_order``); freight and invoice amounts show only to
people granted them.
"""

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from apps.billing.visibility import Amounts
from apps.timeline.models import OrderStage
from apps.timeline.selectors import ORDER_LIST_BY_RISK, ORDER_LIST_ORDER, find_orders, order_list, order_timeline
from controltower.access import role_required
from controltower.keyset import keyset_page

VIEW = "timeline.view_order"
ORDERS_PER_PAGE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class SearchForm(forms.Form):
    q = forms.CharField(max_length=100, required=False, strip=True)


SORT_NEWEST, SORT_RISK = "newest", "risk"


class OrderFilterForm(forms.Form):
    stage = forms.ChoiceField(choices=[("", "All stages"), *OrderStage.choices], required=False)
    late = forms.BooleanField(required=False, label="Late only")
    min_risk = forms.IntegerField(label="Late risk at least (%)", min_value=0, max_value=100, required=False)
    sort = forms.ChoiceField(
        choices=[(SORT_NEWEST, "Newest first"), (SORT_RISK, "Most likely late first")], required=False
    )


@require_GET
@role_required(VIEW)
def search(request: HttpRequest) -> HttpResponse:
    """One match goes straight to the order; several are listed; none says so."""
    form = SearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    if not query:
        return render(request, "timeline/search.html", {"form": form, "query": query})
    matches = find_orders(query)
    if len(matches) == 1:
        return redirect("order-detail", pk=matches[0].order.pk)
    return render(request, "timeline/search.html", {"form": form, "query": query, "matches": matches})


@require_GET
@role_required(VIEW)
def order_list_view(request: HttpRequest) -> HttpResponse:
    form = OrderFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    by_risk = filters.get("sort") == SORT_RISK
    min_risk = filters.get("min_risk")
    orders = order_list(
        stage=filters.get("stage", ""),
        late_only=filters.get("late", False),
        min_risk=min_risk / 100 if min_risk is not None else None,
        by_risk=by_risk,
    )
    keys = ORDER_LIST_BY_RISK if by_risk else ORDER_LIST_ORDER
    page = keyset_page(
        orders, keys, size=ORDERS_PER_PAGE, after=request.GET.get("after"), before=request.GET.get("before")
    )
    query = request.GET.copy()
    for cursor in ("after", "before", "page"):
        query.pop(cursor, None)
    return render(request, "timeline/order_list.html", {"form": form, "page": page, "query": query.urlencode()})


@require_GET
@role_required(VIEW)
def order_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The order's timeline; an HTMX request (the live refresh) gets only the timeline section."""
    timeline = order_timeline(pk)
    if timeline is None:
        raise Http404("No such order.")
    template = "timeline/order_detail.html#timeline" if request.htmx else "timeline/order_detail.html"
    context = {"timeline": timeline, "order": timeline.order, "amounts": Amounts.of(request.user)}
    return render(request, template, context)
