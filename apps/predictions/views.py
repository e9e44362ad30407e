"""The prediction on the order page (a fragment the page loads), the shipments at risk, and the
backtest on the dashboard."""

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from apps.dashboards.charts import Bar, Series, bar_chart, line_chart
from apps.predictions.selectors import RISK_ORDER, latest_backtest, order_predictions, risk_list, risk_threshold
from apps.timeline.models import Order
from controltower.access import role_required
from controltower.keyset import keyset_page

READ = "timeline.view_shipment"
DASHBOARD = "dashboards.view_sla_dashboard"


@require_GET
@role_required(READ)
def order_prediction(request: HttpRequest, order_id: int) -> HttpResponse:
    order = get_object_or_404(Order, pk=order_id)
    context = {"order": order, "rows": order_predictions(order.pk), "threshold": risk_threshold(order.customer_id)}
    return render(request, "predictions/_order_prediction.html", context)


RISKS = [("", "Any"), ("0.3", "30 % or more"), ("0.5", "50 % or more"), ("0.8", "80 % or more")]
PER_PAGE = 50


class RiskFilterForm(forms.Form):
    min_risk = forms.TypedChoiceField(choices=RISKS, coerce=float, empty_value=None, required=False, label="Risk")
    customer = forms.CharField(max_length=40, required=False, strip=True, label="Customer code")


@require_GET
@role_required(READ)
def risk_page(request: HttpRequest) -> HttpResponse:
    """Shipments on their way, the most likely to miss their promise first."""
    form = RiskFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    rows = risk_list(min_risk=filters.get("min_risk"), customer=filters.get("customer", ""))
    page = keyset_page(
        rows, RISK_ORDER, size=PER_PAGE, after=request.GET.get("after"), before=request.GET.get("before")
    )
    query = request.GET.copy()
    for cursor in ("after", "before"):
        query.pop(cursor, None)
    return render(request, "predictions/at_risk.html", {"form": form, "page": page, "query": query.urlencode()})


@require_GET
@role_required(DASHBOARD)
def backtest_page(request: HttpRequest) -> HttpResponse:
    report = latest_backtest()
    context = {"report": report}
    if report is not None:
        stages = report.figures["stages"]
        context |= {"stages": stages, "error_chart": _error_chart(stages), "calibration_chart": _calibration(stages)}
    return render(request, "predictions/backtest.html", context)


# Short enough for a bar's label ("out for delivery: carrier" would be cut).
CHART_STAGES = {"picked_up": "at pickup", "in_transit": "in transit", "out_for_delivery": "delivering"}


def _error_chart(stages: list[dict]) -> str:
    """Mean absolute error per stage, all carriers: ours, the carrier's estimate, the promise."""
    bars = []
    for stage in stages:
        overall = stage["carriers"][0] if stage["carriers"] else None
        if overall is None:
            continue
        for name, figures in (("ours", overall["model"]), ("carrier", overall["carrier_estimate"])):
            bars.append(
                Bar(f"{CHART_STAGES[stage['stage']]}: {name}", figures["mae_hours"], note=f"{figures['n']} shipments")
            )
        bars.append(Bar(f"{CHART_STAGES[stage['stage']]}: promise", overall["promise"]["mae_hours"]))
    return bar_chart(bars, title="Mean absolute error, hours", format_value=lambda v: f"{v:.1f} h")


def _calibration(stages: list[dict]) -> str:
    """Observed share of late deliveries per predicted risk band, at pickup, against the diagonal."""
    pickup = next((s for s in stages if s["stage"] == "picked_up" and s["carriers"]), None)
    bands = pickup["carriers"][0]["model"]["calibration"] if pickup else []
    labels = [f"{band['from']:.0%}–{band['to']:.0%}" for band in bands]
    series = [
        Series("predicted", [band["predicted"] * 100 for band in bands]),
        Series("observed", [band["observed"] * 100 for band in bands]),
    ]
    return line_chart(labels, series, title="At-risk calibration at pickup, %", format_value=lambda v: f"{v:.0f} %")
