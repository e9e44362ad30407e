"""Server-rendered SVG charts: no JavaScript, readable without colour, usable with a screen reader.

Every series has a colour from the Okabe–Ito palette and a second cue that survives
colour-blindness and grey-scale printing: a dash pattern and a marker shape in line charts, a
hatch pattern in stacked columns. Each point, bar and segment carries a ``<title>`` tooltip and,
when given an ``href``, links to its drill-down. Charts scale to their container through their
``viewBox``; sizes below are in viewBox units.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from uuid import uuid4

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
INK = ("#fff", "#000", "#fff", "#000", "#000", "#fff", "#000", "#fff")
"""A colour that stands out on each palette colour, for hatching drawn over it."""
DASHES = ("none", "6 3", "2 3", "8 3 2 3", "12 4", "2 2 6 2", "4 4", "1 3")
MARKERS = (
    "M-4,0a4,4 0 1,0 8,0a4,4 0 1,0 -8,0Z",  # circle
    "M-3.5,-3.5h7v7h-7Z",  # square
    "M0,-4.5L4.5,3.5H-4.5Z",  # triangle
    "M0,-5L5,0L0,5L-5,0Z",  # diamond
    "M0,4.5L4.5,-3.5H-4.5Z",  # triangle pointing down
    "M-1.5,-4.5h3v3h3v3h-3v3h-3v-3h-3v-3h3Z",  # plus
    "M2.1,-4.2L4.2,-2.1L2.1,0L4.2,2.1L2.1,4.2L0,2.1L-2.1,4.2L-4.2,2.1L-2.1,0L-4.2,-2.1L-2.1,-4.2L0,-2.1Z",  # cross
    "M0,-5L1.3,-1.8L4.8,-1.5L2.1,0.7L2.9,4L0,2.2L-2.9,4L-2.1,0.7L-4.8,-1.5L-1.3,-1.8Z",  # star
)
HATCHES: tuple[tuple[str, int] | None, ...] = (
    None,  # the first series is solid
    ("M3,0V6", 45),
    ("M3,0V6", -45),
    ("M0,3H6", 0),
    ("M3,0V6", 0),
    ("M3,0V6M0,3H6", 45),
    ("M3,0V6M0,3H6", 0),
    ("M2,3H4", 0),
)
"""Per series: a stroke drawn in a 6×6 tile and the tile's rotation in degrees."""

NO_DATA = "No data for this period"
WIDTH = 640
HEIGHT = 320
FONT_SIZE = 12
CHAR_WIDTH = 6.8
"""Average advance of a character at FONT_SIZE, to estimate text widths for layout."""
PAD = 8
X_LABELS_HEIGHT = 28
LEGEND_ROW = 20
LEGEND_SWATCH = 28
LEGEND_MAX_CHARS = 28
LABEL_MIN_WIDTH = 56
LABEL_MAX_CHARS = 16
BAR_ROW = 28
BAR_HEIGHT = 18
BAR_LABEL_WIDTH = 168
BAR_VALUE_WIDTH = 64


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]
    hrefs: list[str | None] | None = None


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    href: str | None = None
    note: str = ""


@dataclass(frozen=True)
class _Plot:
    """The rectangle the data is drawn in, and the value at its top edge."""

    left: float
    top: float
    right: float
    bottom: float
    scale_max: float
    intervals: int

    def y(self, value: float) -> float:
        return self.bottom - (self.bottom - self.top) * _clamp(value, self.scale_max) / self.scale_max

    def x(self, value: float) -> float:
        return self.left + (self.right - self.left) * _clamp(value, self.scale_max) / self.scale_max

    def slot(self, count: int) -> float:
        return (self.right - self.left) / count

    def centre(self, index: int, count: int) -> float:
        return self.left + (index + 0.5) * self.slot(count)


def compact(value: float) -> str:
    """A short number for axes and labels: 1234 -> "1.2k", 0.5 -> "0.5", 12 -> "12"."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return _short(value / size) + suffix
    return _short(value)


def line_chart(
    labels: list[str], series: list[Series], *, title: str, format_value: Callable[[float], str] = compact
) -> SafeString:
    if _no_values(labels, series):
        return _empty(title)
    _check_lengths(labels, series)
    legend, legend_height = _legend([s.name for s in series], _line_swatch)
    values = [v for s in series for v in s.values if v is not None]
    plot = _plot(
        top=PAD + legend_height, bottom=HEIGHT - X_LABELS_HEIGHT, largest=max(values), format_value=format_value
    )
    lines = [_series_line(plot, labels, s, index, format_value) for index, s in enumerate(series)]
    desc = f"Line chart of {_names(series)} over {len(labels)} points, from {labels[0]} to {labels[-1]}."
    body = format_html(
        "{}{}{}{}",
        _y_grid(plot, format_value),
        _x_labels(plot, labels),
        _join(lines),
        legend,
    )
    return _svg(height=HEIGHT, title=title, desc=desc, body=body)


def bar_chart(bars: list[Bar], *, title: str, format_value: Callable[[float], str] = compact) -> SafeString:
    """Horizontal bars, one row each, so long partner names stay readable; grows with the rows."""
    values = [bar.value for bar in bars if bar.value is not None]
    if not values:
        return _empty(title)
    height = PAD + len(bars) * BAR_ROW + X_LABELS_HEIGHT
    scale_max, intervals = _scale(max(values))
    plot = _Plot(
        left=BAR_LABEL_WIDTH,
        top=PAD,
        right=WIDTH - BAR_VALUE_WIDTH,
        bottom=PAD + len(bars) * BAR_ROW,
        scale_max=scale_max,
        intervals=intervals,
    )
    rows = [_bar_row(plot, index, bar, format_value) for index, bar in enumerate(bars)]
    desc = "; ".join(f"{bar.label}: {_value_text(bar.value, format_value)}" for bar in bars)
    body = format_html(
        "{}{}",
        _x_grid(plot, format_value),
        _join(rows),
    )
    return _svg(height=height, title=title, desc=f"Bar chart. {desc}.", body=body)


def stacked_columns(
    labels: list[str], series: list[Series], *, title: str, format_value: Callable[[float], str] = compact
) -> SafeString:
    """Vertical columns, one per label, stacked by series (age buckets by queue, for instance)."""
    if _no_values(labels, series):
        return _empty(title)
    _check_lengths(labels, series)
    chart_id = _new_id()
    legend, legend_height = _legend([s.name for s in series], lambda i, x, y: _hatched_swatch(chart_id, i, x, y))
    totals = [_column_total(series, column) for column in range(len(labels))]
    largest = max(total for total in totals if total is not None)
    plot = _plot(
        top=PAD + legend_height + FONT_SIZE + 4,
        bottom=HEIGHT - X_LABELS_HEIGHT,
        largest=largest,
        format_value=format_value,
    )
    columns = [
        _column(plot, chart_id, labels, series, column, totals[column], format_value) for column in range(len(labels))
    ]
    desc = "; ".join(
        f"{label}: {_value_text(total, format_value)}" for label, total in zip(labels, totals, strict=True)
    )
    body = format_html(
        "<defs>{}</defs>{}{}{}{}",
        _hatch_patterns(chart_id, len(series)),
        _y_grid(plot, format_value),
        _x_labels(plot, labels),
        _join(columns),
        legend,
    )
    return _svg(
        height=HEIGHT,
        title=title,
        desc=f"Stacked columns of {_names(series)}. Totals: {desc}.",
        body=body,
        chart_id=chart_id,
    )


# --- Chart parts ----------------------------------------------------------------------------


def _series_line(
    plot: _Plot, labels: list[str], series: Series, index: int, format_value: Callable[[float], str]
) -> SafeString:
    """The series' path, broken where a value is missing, and a marker with a tooltip per value."""
    commands, markers = [], []
    drawing = False
    for position, (label, value) in enumerate(zip(labels, series.values, strict=True)):
        if value is None:
            drawing = False
            continue
        x, y = plot.centre(position, len(labels)), plot.y(value)
        commands.append(f"{'L' if drawing else 'M'}{_n(x)},{_n(y)}")
        drawing = True
        tooltip = f"{series.name} · {label}: {format_value(value)}"
        markers.append(_linked(_marker(index, x, y, tooltip=tooltip), _href(series, position)))
    return format_html(
        '<g><path class="line" d="{}" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}" '
        'stroke-linejoin="round"/>{}</g>',
        "".join(commands),
        _colour(index),
        DASHES[index % len(DASHES)],
        _join(markers),
    )


def _marker(index: int, x: float, y: float, *, tooltip: str = "") -> SafeString:
    """The series' marker shape at (x, y); a data point when it has a tooltip, else a legend swatch."""
    return format_html(
        '<path class="{}" d="{}" transform="translate({} {})" fill="{}">{}</path>',
        "point" if tooltip else "swatch",
        MARKERS[index % len(MARKERS)],
        _n(x),
        _n(y),
        _colour(index),
        format_html("<title>{}</title>", tooltip) if tooltip else "",
    )


def _bar_row(plot: _Plot, index: int, bar: Bar, format_value: Callable[[float], str]) -> SafeString:
    """One bar with its label on the left and its value at its end ("no data" when missing)."""
    top = plot.top + index * BAR_ROW
    baseline = top + BAR_ROW / 2 + FONT_SIZE / 3
    label = _text(plot.left - PAD, baseline, bar.label, anchor="end", max_chars=int((plot.left - PAD) / CHAR_WIDTH))
    tooltip = f"{bar.label}: {_value_text(bar.value, format_value)}" + (f" · {bar.note}" if bar.note else "")
    if bar.value is None:
        shape = format_html(
            '<text class="no-data" x="{}" y="{}" font-style="italic" fill-opacity=".7">no data</text>',
            _n(plot.left + 4),
            _n(baseline),
        )
    else:
        end = plot.x(bar.value)
        shape = format_html(
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/><text class="value" x="{}" y="{}">{}</text>',
            _n(plot.left),
            _n(top + (BAR_ROW - BAR_HEIGHT) / 2),
            _n(end - plot.left),
            BAR_HEIGHT,
            PALETTE[0],
            _n(end + 4),
            _n(baseline),
            format_value(bar.value),
        )
    row = format_html('<g class="bar"><title>{}</title>{}{}</g>', tooltip, label, shape)
    return _linked(row, bar.href)


def _column(
    plot: _Plot,
    chart_id: str,
    labels: list[str],
    series: list[Series],
    column: int,
    total: float | None,
    format_value: Callable[[float], str],
) -> SafeString:
    """One stacked column with its total above it, or "no data" when every value is missing."""
    centre = plot.centre(column, len(labels))
    width = min(plot.slot(len(labels)) * 0.6, 48)
    if total is None:
        return format_html(
            '<text class="no-data" x="{}" y="{}" text-anchor="middle" font-style="italic" fill-opacity=".7">'
            "no data</text>",
            _n(centre),
            _n(plot.bottom - 4),
        )
    segments, stacked = [], 0.0
    for index, s in enumerate(series):
        value = s.values[column]
        if not value:
            continue
        top, bottom = plot.y(stacked + value), plot.y(stacked)
        stacked += value
        tooltip = f"{labels[column]} · {s.name}: {format_value(value)}"
        shape = _hatched_rect(chart_id, index, centre - width / 2, top, width, bottom - top)
        segment = format_html('<g class="segment"><title>{}</title>{}</g>', tooltip, shape)
        segments.append(_linked(segment, _href(s, column)))
    return format_html(
        '<g>{}<text class="total" x="{}" y="{}" text-anchor="middle">{}</text></g>',
        _join(segments),
        _n(centre),
        _n(plot.y(total) - 4),
        format_value(total),
    )


def _column_total(series: list[Series], column: int) -> float | None:
    values = [value for value in (s.values[column] for s in series) if value is not None]
    return sum(values) if values else None


def _hatched_rect(chart_id: str, index: int, x: float, y: float, width: float, height: float) -> SafeString:
    rect = '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
    solid = format_html(rect, _n(x), _n(y), _n(width), _n(height), _colour(index))
    if HATCHES[index % len(HATCHES)] is None:
        return solid
    hatch = format_html(rect, _n(x), _n(y), _n(width), _n(height), f"url(#{_pattern_id(chart_id, index)})")
    return format_html("{}{}", solid, hatch)


def _hatch_patterns(chart_id: str, count: int) -> SafeString:
    patterns = []
    for index in range(count):
        hatch = HATCHES[index % len(HATCHES)]
        if hatch is None:
            continue
        stroke, angle = hatch
        patterns.append(
            format_html(
                '<pattern id="{}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate({})">'
                '<path d="{}" stroke="{}" stroke-width="1.5" stroke-opacity=".7"/></pattern>',
                _pattern_id(chart_id, index),
                angle,
                stroke,
                INK[index % len(INK)],
            )
        )
    return _join(patterns)


def _legend(names: list[str], swatch: Callable[[int, float, float], SafeString]) -> tuple[SafeString, float]:
    """Legend entries in rows across the top, wrapping when a row is full; returns it and its height."""
    items = []
    x, y = PAD, PAD
    for index, name in enumerate(names):
        width = LEGEND_SWATCH + 6 + min(len(name), LEGEND_MAX_CHARS) * CHAR_WIDTH + 16
        if x > PAD and x + width > WIDTH - PAD:
            x, y = PAD, y + LEGEND_ROW
        middle = y + LEGEND_ROW / 2
        text = _text(x + LEGEND_SWATCH + 6, middle + FONT_SIZE / 3, name, anchor="start", max_chars=LEGEND_MAX_CHARS)
        items.append(format_html('<g class="legend-item">{}{}</g>', swatch(index, x, middle), text))
        x += width
    legend = format_html('<g class="legend">{}</g>', _join(items))
    return legend, y + LEGEND_ROW


def _line_swatch(index: int, x: float, y: float) -> SafeString:
    return format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/>{}',
        _n(x),
        _n(y),
        _n(x + LEGEND_SWATCH),
        _n(y),
        _colour(index),
        DASHES[index % len(DASHES)],
        _marker(index, x + LEGEND_SWATCH / 2, y),
    )


def _hatched_swatch(chart_id: str, index: int, x: float, y: float) -> SafeString:
    return _hatched_rect(chart_id, index, x + 4, y - 7, LEGEND_SWATCH - 8, 14)


def _y_grid(plot: _Plot, format_value: Callable[[float], str]) -> SafeString:
    """Horizontal grid lines with their values on the left (column and line charts)."""
    return _join(
        [
            _grid_line(
                (plot.left, plot.y(value), plot.right, plot.y(value)),
                (plot.left - 6, plot.y(value) + FONT_SIZE / 3, "end"),
                format_value(value),
                baseline=step == 0,
            )
            for step, value in _ticks(plot)
        ]
    )


def _x_grid(plot: _Plot, format_value: Callable[[float], str]) -> SafeString:
    """Vertical grid lines with their values underneath (bar charts)."""
    return _join(
        [
            _grid_line(
                (plot.x(value), plot.top, plot.x(value), plot.bottom),
                (plot.x(value), plot.bottom + FONT_SIZE + 6, "middle"),
                format_value(value),
                baseline=step == 0,
            )
            for step, value in _ticks(plot)
        ]
    )


def _ticks(plot: _Plot) -> list[tuple[int, float]]:
    return [(step, plot.scale_max * step / plot.intervals) for step in range(plot.intervals + 1)]


def _grid_line(
    line: tuple[float, float, float, float], label: tuple[float, float, str], text: str, *, baseline: bool
) -> SafeString:
    x1, y1, x2, y2 = line
    label_x, label_y, anchor = label
    return format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="{}"/>'
        '<text class="tick" x="{}" y="{}" text-anchor="{}">{}</text>',
        _n(x1),
        _n(y1),
        _n(x2),
        _n(y2),
        ".4" if baseline else ".15",
        _n(label_x),
        _n(label_y),
        anchor,
        text,
    )


def _x_labels(plot: _Plot, labels: list[str]) -> SafeString:
    """Labels under the columns; when they would collide, every n-th one (tooltips name them all)."""
    every = max(1, math.ceil(len(labels) * LABEL_MIN_WIDTH / (plot.right - plot.left)))
    max_chars = min(LABEL_MAX_CHARS, int(every * plot.slot(len(labels)) / CHAR_WIDTH) - 1)
    y = plot.bottom + FONT_SIZE + 6
    return format_html_join(
        "",
        "{}",
        (
            (_text(plot.centre(index, len(labels)), y, label, anchor="middle", max_chars=max_chars),)
            for index, label in enumerate(labels)
            if index % every == 0
        ),
    )


def _text(x: float, y: float, text: str, *, anchor: str, max_chars: int) -> SafeString:
    """A label cut to ``max_chars`` with an ellipsis; a cut label keeps its full text as a tooltip."""
    if len(text) <= max_chars:
        return format_html('<text x="{}" y="{}" text-anchor="{}">{}</text>', _n(x), _n(y), anchor, text)
    short = text[: max(max_chars - 1, 1)].rstrip() + "…"
    return format_html(
        '<text x="{}" y="{}" text-anchor="{}"><title>{}</title>{}</text>', _n(x), _n(y), anchor, text, short
    )


def _svg(*, height: float, title: str, desc: str, body: SafeString, chart_id: str = "") -> SafeString:
    chart_id = chart_id or _new_id()
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {} {}" width="100%" '
        'preserveAspectRatio="xMidYMid meet" role="img" aria-labelledby="{}-title {}-desc" '
        'font-family="system-ui, sans-serif" font-size="{}" fill="currentColor">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        WIDTH,
        _n(height),
        chart_id,
        chart_id,
        FONT_SIZE,
        chart_id,
        title,
        chart_id,
        desc,
        body,
    )


def _empty(title: str) -> SafeString:
    body = format_html(
        '<text class="empty" x="{}" y="{}" text-anchor="middle" fill-opacity=".7">{}</text>', _n(WIDTH / 2), 44, NO_DATA
    )
    return _svg(height=80, title=title, desc=NO_DATA, body=body)


def _join(parts: list[SafeString]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


def _linked(element: SafeString, href: str | None) -> SafeString:
    return format_html('<a href="{}">{}</a>', href, element) if href else element


# --- Scales and small helpers ---------------------------------------------------------------


def _scale(largest: float) -> tuple[float, int]:
    """A round top for a zero-based axis (1, 2, 2.5 or 5 × 10^n) and its number of grid intervals."""
    if largest <= 0:
        return 1.0, 5
    power = 10.0 ** math.floor(math.log10(largest))
    for step, intervals in ((1, 5), (2, 4), (2.5, 5), (5, 5)):
        top = step * power
        if top >= largest * (1 - 1e-9):
            return top, intervals
    return 10 * power, 5


def _plot(*, top: float, bottom: float, largest: float, format_value: Callable[[float], str]) -> _Plot:
    """The plot area of a chart with a vertical axis, leaving room on the left for its widest tick label."""
    scale_max, intervals = _scale(largest)
    widest = max(len(format_value(scale_max * step / intervals)) for step in range(intervals + 1))
    return _Plot(
        left=PAD + widest * CHAR_WIDTH + 6,
        top=top,
        right=WIDTH - PAD * 2,
        bottom=bottom,
        scale_max=scale_max,
        intervals=intervals,
    )


def _no_values(labels: list[str], series: list[Series]) -> bool:
    return not labels or all(value is None for s in series for value in s.values)


def _check_lengths(labels: list[str], series: list[Series]) -> None:
    for s in series:
        if len(s.values) != len(labels) or (s.hrefs is not None and len(s.hrefs) != len(labels)):
            raise ValueError(f"series {s.name!r} needs one value (and href) per label ({len(labels)})")


def _href(series: Series, position: int) -> str | None:
    return series.hrefs[position] if series.hrefs else None


def _names(series: list[Series]) -> str:
    return ", ".join(s.name for s in series)


def _value_text(value: float | None, format_value: Callable[[float], str]) -> str:
    return "no data" if value is None else format_value(value)


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _pattern_id(chart_id: str, index: int) -> str:
    return f"{chart_id}-hatch-{index}"


def _new_id() -> str:
    """Unique per chart, so several charts on one page keep their own title, desc and patterns."""
    return f"chart-{uuid4().hex[:10]}"


def _clamp(value: float, top: float) -> float:
    return min(max(value, 0.0), top)


def _short(number: float) -> str:
    if abs(number) < 1:
        return f"{number:.2g}"
    text = f"{number:.1f}" if abs(number) < 100 else f"{number:.0f}"
    return text.removesuffix(".0")


def _n(number: float) -> str:
    """A coordinate with at most one decimal, as short as possible."""
    return f"{round(number, 1):g}"
