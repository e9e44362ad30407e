"""Human labels for event kinds, reference kinds and locations, shared by the pages and the CLI."""

from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from django import template
from django.template.defaultfilters import floatformat
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import ngettext

from apps.timeline.events import EventKind, ReferenceKind

register = template.Library()

K = EventKind
EVENT_LABELS = {
    K.ORDER_CREATED: "Order created",
    K.ORDER_RELEASED: "Released to warehouse",
    K.ORDER_ALLOCATED: "Stock allocated",
    K.ORDER_PICKED: "Picked",
    K.ORDER_PACKED: "Packed",
    K.ORDER_CANCELLED: "Order cancelled",
    K.SHIPMENT_MANIFESTED: "Shipment manifested",
    K.SHIPMENT_TRACKING_ASSIGNED: "Tracking number assigned",
    K.SHIPMENT_PICKED_UP: "Picked up by carrier",
    K.SHIPMENT_IN_TRANSIT: "In transit",
    K.SHIPMENT_OUT_FOR_DELIVERY: "Out for delivery",
    K.SHIPMENT_ETA_UPDATED: "New delivery estimate",
    K.SHIPMENT_DELAYED: "Delayed",
    K.SHIPMENT_DELIVERY_ATTEMPTED: "Delivery attempted",
    K.SHIPMENT_DELIVERED: "Delivered",
    K.SHIPMENT_POD_RECEIVED: "Proof of delivery received",
    K.SHIPMENT_DAMAGED: "Reported damaged",
    K.SHIPMENT_REFUSED: "Refused by consignee",
    K.SHIPMENT_STATUS_UNMAPPED: "Carrier status (unmapped code)",
    K.FREIGHT_CHARGE_POSTED: "Freight charge posted",
    K.FREIGHT_CHARGE_VALIDATED: "Freight charge validated",
    K.FREIGHT_CHARGE_DISPUTED: "Freight charge disputed",
    K.FREIGHT_CHARGE_SETTLED: "Freight charge settled",
    K.INVOICE_GENERATED: "Invoice generated",
    K.INVOICE_HELD: "Invoice held",
    K.INVOICE_RELEASED: "Invoice released",
    K.INVOICE_POSTED: "Invoice posted",
    K.RETURN_AUTHORIZED: "Return authorised",
    K.RETURN_RECEIVED: "Return received",
    K.INVENTORY_SNAPSHOT: "Inventory snapshot",
    K.INVENTORY_ADJUSTED: "Inventory adjusted",
}
R = ReferenceKind
REFERENCE_LABELS = {
    R.ORDER: "Order",
    R.PO: "PO",
    R.SHIPMENT: "Shipment",
    R.TRACKING: "Tracking",
    R.BOL: "BOL",
    R.PRO: "PRO",
    R.INVOICE: "Invoice",
    R.RMA: "RMA",
    R.ASN: "ASN",
    R.CONTAINER: "Container",
}
# Milestones that need a person's attention are flagged on the timeline.
ALERT_KINDS = frozenset(
    {
        K.ORDER_CANCELLED,
        K.SHIPMENT_DELAYED,
        K.SHIPMENT_DELIVERY_ATTEMPTED,
        K.SHIPMENT_DAMAGED,
        K.SHIPMENT_REFUSED,
        K.FREIGHT_CHARGE_DISPUTED,
        K.INVOICE_HELD,
    }
)


@register.filter
def event_label(kind: str) -> str:
    return EVENT_LABELS.get(kind, kind)


@register.filter
def is_alert(kind: str) -> bool:
    return kind in ALERT_KINDS


@register.filter
def reference_label(kind: str) -> str:
    return REFERENCE_LABELS.get(kind, kind)


@register.filter
def place(location: dict[str, Any] | None) -> str:
    """ "DC Lyon, Lyon, FR" from a milestone's location; coordinates when that is all there is."""
    if not location:
        return ""
    parts = [location.get(name) for name in ("name", "city", "state", "country")]
    text = ", ".join(dict.fromkeys(part for part in parts if part))
    if not text and location.get("latitude") is not None and location.get("longitude") is not None:
        text = f"{location['latitude']}, {location['longitude']}"
    return text


def local_time(value: datetime) -> str:
    """A time in the active zone, with the zone's abbreviation: "25 Nov 2026 14:03 CET"."""
    return timezone.localtime(value).strftime("%d %b %Y %H:%M %Z")


@register.filter
def when(value: datetime | None) -> SafeString | str:
    """A ``<time>`` element in the user's zone (see ``local_time``)."""
    if value is None:
        return "—"
    return format_html('<time datetime="{}">{}</time>', timezone.localtime(value).isoformat(), local_time(value))


@register.filter
def money(amount: Decimal | None, currency: str = "") -> str:
    """``1,234.50 EUR``; a dash when there is no amount."""
    if amount is None:
        return "—"
    return f"{floatformat(amount, '2g')} {currency}".strip()


class _Plural:
    """A ``timesince`` unit ("%(num)d day") translated when it is written, without the lazy
    string Django keeps for it, whose every use costs more than the rest of ``timesince``."""

    def __init__(self, singular: str, plural: str) -> None:
        self.singular, self.plural = singular, plural

    def __mod__(self, values: dict[str, int]) -> str:
        return ngettext(self.singular, self.plural, values["num"]) % values


_UNITS = {
    unit: _Plural(f"%(num)d {unit}", f"%(num)d {unit}s") for unit in ("year", "month", "week", "day", "hour", "minute")
}


@register.filter
def since(value: datetime | None, now: datetime) -> str:
    """``value|timesince:now`` ("3 days, 4 hours"), cheaper: a queue page writes a hundred."""
    return _span(value, now)


@register.filter
def until(value: datetime | None, now: datetime) -> str:
    """``value|timeuntil:now``, as ``since``."""
    return _span(now, value)


def _span(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return ""
    try:
        return timesince(start, end, time_strings=_UNITS)
    except (TypeError, ValueError):
        return ""


_ID = 2_147_483_647  # the placeholder reversed once, then replaced by each real id


@register.filter
def id_url(pk: int, name: str) -> str:
    """``{% url name pk %}`` for a URL whose one argument is an id, filled into the pattern
    reversed once: a queue page links two of them a row, and reversing is the dearer part."""
    return _id_url_pattern(name, get_script_prefix()).replace(str(_ID), str(int(pk)))


@cache
def _id_url_pattern(name: str, script_prefix: str) -> str:  # the prefix keys the cache; reverse() reads it
    return reverse(name, args=[_ID])
