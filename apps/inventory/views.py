"""The inventory page (search by SKU, filter by warehouse and mismatch, CSV export) and one
position's ledger with its on-hand chart."""

import csv
from collections.abc import Iterator
from decimal import Decimal

from django import forms
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.dashboards.charts import Series, line_chart
from apps.inventory.models import InventoryPosition
from apps.inventory.selectors import HistoryPoint, position_history, position_search, positions
from controltower.access import role_required
from controltower.keyset import Key, keyset_page

READ = "inventory.view_inventoryposition"
PER_PAGE = 50
ORDER = [Key("warehouse_id"), Key("sku"), Key("uom")]
EXPORT_CHUNK = 2000


class InventoryFilterForm(forms.Form):
    sku = forms.CharField(max_length=100, required=False, strip=True, label="SKU starts with")
    warehouse = forms.CharField(max_length=40, required=False, strip=True, label="Warehouse code")
    mismatch = forms.BooleanField(required=False, label="Mismatches only")


def _filters(request: HttpRequest) -> tuple[InventoryFilterForm, dict]:
    form = InventoryFilterForm(request.GET)
    return form, (form.cleaned_data if form.is_valid() else {})


@require_GET
@role_required(READ)
def inventory_page(request: HttpRequest) -> HttpResponse:
    form, filters = _filters(request)
    page = keyset_page(
        position_search(**filters),
        ORDER,
        size=PER_PAGE,
        after=request.GET.get("after"),
        before=request.GET.get("before"),
    )
    query = request.GET.copy()
    for cursor in ("after", "before"):
        query.pop(cursor, None)
    return render(request, "inventory/positions.html", {"form": form, "page": page, "query": query.urlencode()})


CSV_HEADER = [
    "warehouse",
    "sku",
    "uom",
    "on_hand",
    "book",
    "difference",
    "allocated",
    "atp",
    "mismatch",
    "units_differ",
]


def _text(value: str) -> str:
    """A text cell that a spreadsheet will not run as a formula."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _number(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


def _csv_rows(found: "Iterator[InventoryPosition]") -> Iterator[list[str]]:
    yield CSV_HEADER
    for p in found:
        yield [
            _text(p.warehouse.code),
            _text(p.sku),
            _text(p.uom),
            *(_number(v) for v in (p.quantity, p.book_quantity, p.difference, p.allocated, p.atp)),
            "yes" if p.mismatch else "no",
            "yes" if p.units_differ else "no",
        ]


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
@role_required(READ)
def inventory_export(request: HttpRequest) -> StreamingHttpResponse:
    """Every position the filters select, streamed."""
    _, filters = _filters(request)
    writer = csv.writer(_Echo())
    rows = _csv_rows(position_search(**filters).iterator(chunk_size=EXPORT_CHUNK))
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="inventory-{timezone.now():%Y%m%d-%H%M}.csv"'
    return response


@require_GET
@role_required(READ)
def position_page(request: HttpRequest, pk: int) -> HttpResponse:
    position = get_object_or_404(positions(), pk=pk)
    history = position_history(position)
    context = {"position": position, "history": list(reversed(history)), "chart": _on_hand_chart(history)}
    return render(request, "inventory/position.html", context)


def _on_hand_chart(history: list[HistoryPoint]) -> str:
    points = [point for point in history if point.level is not None]
    labels = [f"{point.entry.occurred_at:%m-%d %H:%M}" for point in points]
    series = [Series("On hand", [float(point.level) for point in points])]
    return line_chart(labels, series, title="On hand over time", format_value=lambda v: f"{v:g}")
