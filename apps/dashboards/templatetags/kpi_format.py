"""How KPI figures read: durations in the largest sensible unit, rates as percentages."""

import math

from django import template

from apps.dashboards.selectors import KpiValue

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """3725 -> "1 h 2 min"; 200000 -> "2.3 d"; None -> "–"; inf -> "> 30 d"."""
    if seconds is None:
        return "–"
    if math.isinf(seconds):
        return "> 30 d"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes and hours < 10 else f"{round(seconds / 3600)} h"
    return f"{seconds / 86400:.1f} d"


@register.filter
def percent(rate: float | None) -> str:
    if rate is None:
        return "–"
    return f"{rate * 100:.1f} %"


@register.filter
def headline(value: KpiValue) -> str:
    """The tile's number: a duration's mean or a rate."""
    return duration(value.mean) if value.is_duration else percent(value.rate)
