"""X12 values: dates, times, time zone codes, numbers and identifier pairs.

Every reader takes the segment and element it reads so a bad value is reported precisely
("segment 9 (DTM) element DTM02: expected a date CCYYMMDD, found 'CCYYMMDD'"), and returns None
instead of raising: the caller decides whether the value was required.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apps.ingest.parsers.x12_reader import Segment

Warn = Callable[[str], None]

_DIGITS = re.compile(r"\d+$")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)$")

# X12 time codes (AT707, DTM04, G6205) and the written abbreviations partners use instead.
ZONE_NAMES = {
    "ET": "America/New_York",
    "CT": "America/Chicago",
    "MT": "America/Denver",
    "PT": "America/Los_Angeles",
    "AT": "America/Halifax",
    "HT": "Pacific/Honolulu",
    "NT": "America/St_Johns",
    "UT": "UTC",
    "GM": "UTC",
    "UTC": "UTC",
    "GMT": "UTC",
    "Z": "UTC",
}
FIXED_OFFSETS = {
    "ES": -5,
    "ED": -4,
    "CS": -6,
    "CD": -5,
    "MS": -7,
    "MD": -6,
    "PS": -8,
    "PD": -7,
    "EST": -5,
    "EDT": -4,
    "CST": -6,
    "CDT": -5,
    "MST": -7,
    "MDT": -6,
    "PST": -8,
    "PDT": -7,
}
LOCAL_TIME = "LT"


@dataclass(frozen=True)
class Moment:
    """A point in time and whether its zone was assumed (LT, or an unknown code)."""

    at: datetime
    zone_assumed: bool = False


def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def read_date(segment: Segment, position: int, warn: Warn, *, short_years: bool = False) -> date | None:
    """CCYYMMDD; YYMMDD is read too (the standard form before 004010, a warning after it)."""
    value = segment.get(position)
    if not value:
        return None
    if _DIGITS.match(value) and len(value) == 6:
        if not short_years:
            warn(f"{segment.label(position)}: expected a date CCYYMMDD, found {value!r} (6 digits); read as 20{value}")
        value = "20" + value
    if not (_DIGITS.match(value) and len(value) == 8):
        warn(f"{segment.label(position)}: expected a date CCYYMMDD, found {value!r}; ignored")
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        warn(f"{segment.label(position)}: expected a date CCYYMMDD, found {value!r} (no such day); ignored")
        return None


def read_time(segment: Segment, position: int, warn: Warn) -> time | None:
    """HHMM, HHMMSS, HHMMSSD or HHMMSSDD (decimal seconds, valid X12), else a warning."""
    value = segment.get(position)
    if not value:
        return None
    if not (_DIGITS.match(value) and len(value) in (4, 6, 7, 8)):
        warn(f"{segment.label(position)}: expected a time HHMM[SS[DD]], found {value!r}; ignored")
        return None
    hour, minute, second = int(value[:2]), int(value[2:4]), int(value[4:6] or 0)
    fraction = value[6:]
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    if hour > 23 or minute > 59 or second > 59:
        warn(f"{segment.label(position)}: expected a time HHMM[SS[DD]], found {value!r} (out of range); ignored")
        return None
    return time(hour, minute, second, micro)


def read_moment(
    segment: Segment,
    date_at: int,
    time_at: int | None,
    zone_at: int | None,
    *,
    default_zone: str,
    warn: Warn,
    short_years: bool = False,
) -> Moment | None:
    """Date, time and zone code elements of one segment as an aware time (None without a date).

    Without a zone code the partner's zone applies. ``LT`` (the location's own zone) and codes we
    do not know use the partner's zone too, flagged as assumed.
    """
    day = read_date(segment, date_at, warn, short_years=short_years)
    if day is None:
        return None
    clock = (read_time(segment, time_at, warn) if time_at else None) or time(0, 0)
    code = segment.get(zone_at).upper() if zone_at else ""
    naive = datetime.combine(day, clock)
    if code in ZONE_NAMES:
        return Moment(naive.replace(tzinfo=zone(ZONE_NAMES[code])))
    if code in FIXED_OFFSETS:
        return Moment(naive.replace(tzinfo=timezone(timedelta(hours=FIXED_OFFSETS[code]), code)))
    if code and code != LOCAL_TIME:
        warn(f"{segment.label(zone_at)}: unknown time zone code {code!r}; read in {default_zone}")
    return Moment(naive.replace(tzinfo=zone(default_zone)), zone_assumed=bool(code))


def read_decimal(segment: Segment, position: int, warn: Warn, *, implied_decimals: int = 0) -> Decimal | None:
    """A plain decimal number (never NaN, Infinity or exponents); ``implied_decimals`` for cents."""
    value = segment.get(position)
    if not value:
        return None
    if not _NUMBER.match(value):
        warn(f"{segment.label(position)}: expected a number, found {value!r}; ignored")
        return None
    number = Decimal(value)
    return number.scaleb(-implied_decimals) if implied_decimals and "." not in value else number


def identifier_pairs(segment: Segment, first: int, last: int | None = None) -> dict[str, str]:
    """Qualifier/ID pairs from element ``first`` (to ``last``) (LIN, IT1, PO1, W01, W12): {"SK": "A-1"}."""
    pairs: dict[str, str] = {}
    end = len(segment.elements) - 1 if last is None else min(last, len(segment.elements) - 1)
    for position in range(first, end, 2):
        qualifier, value = segment.get(position).upper(), segment.get(position + 1)
        if qualifier and value:
            pairs.setdefault(qualifier, value)
    return pairs
