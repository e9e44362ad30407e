"""The SLA dashboard and its drill-downs. Every figure links to the orders behind it.

For the roles that steer by it (``dashboards.view_sla_dashboard``: Supply Chain, Finance and
Integration Admin; see ``apps/exceptions/roles.py``).
"""

from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from apps.dashboards import charts
from apps.dashboards.forms import KpiFilterForm
from apps.dashboards.models import Metric, Rollup
from apps.dashboards.selectors import (
    AGE_BUCKETS,
    Board,
    KpiFilter,
    KpiValue,
    case_ageing,
    drilldown,
    kpi_board,
    partners_by_id,
)
from apps.dashboards.services import DURATIONS, kpi_day
from apps.inventory.selectors import accuracy_board
from apps.partners.models import Partner
from controltower.access import role_required

VIEW = "dashboards.view_sla_dashboard"
M = Metric
SECTIONS: list[tuple[str, list[str]]] = [
    ("Warehouse", [M.ORDER_TO_SHIP, M.PICK_TIME, M.SHIP_TIME]),
    ("Delivery", [M.OTIF, M.ON_TIME, M.IN_FULL, M.TRANSIT_TIME]),
    ("Cash", [M.DELIVERY_TO_INVOICE, M.FREIGHT_SETTLEMENT]),
    (
        "Data",
        [
            M.COMPLETE_TIMELINE,
            M.SOURCE_LAG,
            M.APPLY_LAG,
            M.FAILED_MESSAGES,
            M.DUPLICATE_EVENTS,
            M.UNMAPPED_STATUSES,
            M.ACKNOWLEDGED,
        ],
    ),
    ("Cases", [M.RESOLUTION_TIME]),
]
DEFINITIONS = {
    M.ORDER_TO_SHIP: "Released to the warehouse → first shipment manifested",
    M.PICK_TIME: "Released → pick confirmed",
    M.SHIP_TIME: "Pick confirmed → manifested",
    M.TRANSIT_TIME: "Picked up (or manifested, without a pick-up scan) → delivered",
    M.ON_TIME: "Delivered orders delivered by their promised date",
    M.IN_FULL: "Delivered orders shipped with every ordered quantity",
    M.OTIF: "Delivered orders both on time and in full",
    M.DELIVERY_TO_INVOICE: "Last delivery → invoice generated",
    M.FREIGHT_SETTLEMENT: "Freight charge posted → settled",
    M.COMPLETE_TIMELINE: "Delivered orders with created, released, picked and shipped on the timeline",
    M.SOURCE_LAG: "Latest event in a message → message received",
    M.APPLY_LAG: "Message received → applied to the timeline",
    M.FAILED_MESSAGES: "Messages that became dead letters",
    M.DUPLICATE_EVENTS: "Events we already had",
    M.UNMAPPED_STATUSES: "Carrier statuses we could not map",
    M.ACKNOWLEDGED: "997 functional groups accepted",
    M.RESOLUTION_TIME: "Case opened → closed; the rate is closed within its SLA",
}
DURATION_TRENDS = (M.ORDER_TO_SHIP, M.TRANSIT_TIME, M.DELIVERY_TO_INVOICE)
RATE_TRENDS = (M.OTIF, M.ON_TIME, M.IN_FULL)
FACTS_PER_PAGE = 50


@dataclass
class Tile:
    metric: str
    label: str
    definition: str
    value: KpiValue
    href: str


@role_required(VIEW)
@require_GET
def sla_dashboard(request: HttpRequest) -> HttpResponse:
    partners = partners_by_id()
    form = _filter_form(request)
    kpi_filter = form.kpi_filter()
    board = kpi_board(kpi_filter, partners)
    compare = form.cleaned_data.get("compare") if form.is_valid() else ""
    compare = compare or M.OTIF
    links = _Links(kpi_filter, partners)
    context = {
        "form": form,
        "kpi_filter": kpi_filter,
        "sections": [(title, [_tile(board, metric, links) for metric in metrics]) for title, metrics in SECTIONS],
        "compare": compare,
        "compare_label": M(compare).label,
        "page_query": request.GET.urlencode(),
        **_trend_charts(board, links),
        **_partner_chart(board, compare, links),
        **_ageing_chart(kpi_filter),
        **_stock_accuracy(kpi_filter),
    }
    partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, "dashboards/sla.html#dashboard" if partial else "dashboards/sla.html", context)
    patch_vary_headers(response, ["HX-Request"])  # the same URL answers with the page or its fragment
    return response


@role_required(VIEW)
@require_GET
def kpi_drill(request: HttpRequest) -> HttpResponse:
    """The facts (orders, shipments, messages, cases) behind one figure of the dashboard."""
    partners = partners_by_id()
    form = _filter_form(request)
    kpi_filter = form.kpi_filter()
    metric = request.GET.get("metric", "")
    metric = metric if metric in M.values else M.OTIF
    day = _date(request.GET.get("day"))
    missed = request.GET.get("missed") == "1"
    page = Paginator(drilldown(kpi_filter, metric, day=day, missed=missed), FACTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "dashboards/drill.html",
        {
            "metric": metric,
            "label": M(metric).label,
            "definition": DEFINITIONS[metric],
            "is_duration": metric in DURATIONS,
            "kpi_filter": kpi_filter,
            "day": day,
            "missed": missed,
            "page": page,
            "partner": partners.get(kpi_filter.partner_id),
            "customer": partners.get(kpi_filter.customer_id),
            "back": reverse("sla-dashboard") + "?" + _Links(kpi_filter, partners).query(),
            "page_query": _without(request.GET, "page"),
            "missed_query": _without(request.GET, "missed"),
        },
    )


def _filter_form(request: HttpRequest) -> KpiFilterForm:
    regions = Rollup.objects.exclude(region="").order_by("region").values_list("region", flat=True).distinct()
    data = request.GET.copy() if request.GET else None
    if data is not None:
        # Fields left out of the address keep the defaults the page shows.
        data.setdefault("compare", M.OTIF)
        if not (data.get("start") or data.get("end")):
            data.setdefault("period", "30")
    return KpiFilterForm(data, today=kpi_day(timezone.now()), regions=list(regions))


class _Links:
    """Drill-down addresses that keep the dashboard's filter."""

    def __init__(self, kpi_filter: KpiFilter, partners: dict[int, Partner]) -> None:
        self.kpi_filter = kpi_filter
        self.partners = partners

    def query(self, **extra: object) -> str:
        f = self.kpi_filter
        params: dict[str, object] = {"period": "custom", "start": f.start, "end": f.end, "grain": f.grain}
        for name, pk in (("partner", f.partner_id), ("customer", f.customer_id)):
            if pk in self.partners:
                params[name] = self.partners[pk].code
        if f.region:
            params["region"] = f.region
        params.update({key: value for key, value in extra.items() if value not in (None, "")})
        return urlencode(params)

    def drill(self, metric: str, **extra: object) -> str:
        return reverse("kpi-drill") + "?" + self.query(metric=metric, **extra)


def _tile(board: Board, metric: str, links: _Links) -> Tile:
    return Tile(metric, M(metric).label, DEFINITIONS[metric], board.tiles[metric], links.drill(metric))


def _chart_value(value: KpiValue) -> float | None:
    """Durations in hours, rates in per cent: the units the charts' axes speak."""
    if value.is_duration:
        return value.mean / 3600 if value.mean is not None else None
    return value.rate * 100 if value.rate is not None else None


def _hours(value: float) -> str:
    return f"{charts.compact(value)} h"


def _per_cent(value: float) -> str:
    return f"{charts.compact(value)} %"


def _period_label(period: date, grain: str) -> str:
    return f"w/c {period:%d %b}" if grain == "week" else f"{period:%d %b}"


def _trend_charts(board: Board, links: _Links) -> dict[str, object]:
    grain = board.kpi_filter.grain
    periods = [period for period, _ in board.trends[M.OTIF]]
    labels = [_period_label(period, grain) for period in periods]

    def series(metric: str) -> charts.Series:
        points = board.trends[metric]
        return charts.Series(
            M(metric).label,
            [_chart_value(value) for _, value in points],
            [links.drill(metric, day=period) for period, _ in points],
        )

    rows = [
        (label, period, [(metric, board.trends[metric][index][1]) for metric in (*DURATION_TRENDS, *RATE_TRENDS)])
        for index, (label, period) in enumerate(zip(labels, periods, strict=True))
    ]
    return {
        "duration_chart": charts.line_chart(
            labels, [series(m) for m in DURATION_TRENDS], title="Average durations, in hours", format_value=_hours
        ),
        "rate_chart": charts.line_chart(
            labels, [series(m) for m in RATE_TRENDS], title="Delivery performance, in per cent", format_value=_per_cent
        ),
        "trend_metrics": [M(m).label for m in (*DURATION_TRENDS, *RATE_TRENDS)],
        "trend_rows": rows,
    }


def _partner_chart(board: Board, compare: str, links: _Links) -> dict[str, object]:
    rows = board.by_partner.get(compare, [])
    bars = [
        charts.Bar(
            f"{partner.code} · {partner.get_kind_display()}",
            _chart_value(value),
            links.drill(compare, partner=partner.code),
            note=f"n = {value.count}",
        )
        for partner, value in rows
    ]
    unit = _hours if compare in DURATIONS else _per_cent
    return {
        "partner_chart": charts.bar_chart(bars, title=f"{M(compare).label} by partner", format_value=unit),
        "partner_rows": [(partner, value, links.drill(compare, partner=partner.code)) for partner, value in rows],
    }


def _ageing_chart(kpi_filter: KpiFilter) -> dict[str, object]:
    ageing = case_ageing(kpi_filter, timezone.now())
    labels = [label for label, _ in AGE_BUCKETS]
    series = [
        charts.Series(
            row.label,
            [float(count) for count in row.buckets],
            [reverse("case-queue", args=[row.queue])] * len(labels),
        )
        for row in ageing
    ]
    return {
        "ageing": ageing,
        "age_labels": labels,
        "ageing_chart": charts.stacked_columns(labels, series, title="Open cases by age and queue"),
    }


def _stock_accuracy(kpi_filter: KpiFilter) -> dict[str, object]:
    """Inventory accuracy a day over the period (the partner filter picks a warehouse) and each
    warehouse's latest figure and snapshot freshness."""
    board = accuracy_board(start=kpi_filter.start, end=kpi_filter.end, warehouse_id=kpi_filter.partner_id)
    labels = [f"{day:%d %b}" for day in board.days]
    shares = [None if share is None else share * 100 for share in board.shares]
    chart = charts.line_chart(
        labels,
        [charts.Series("Positions within tolerance", shares)],
        title="Inventory accuracy, %",
        format_value=lambda v: f"{v:.1f} %",
    )
    return {"stock_accuracy": board.latest, "stock_accuracy_chart": chart}


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _without(query: object, name: str) -> str:
    copy = query.copy()
    copy.pop(name, None)
    return copy.urlencode()
