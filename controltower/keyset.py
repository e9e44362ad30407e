"""Keyset (seek) pagination: a page costs the same on the first page and a thousand pages in.

A page is asked for as the rows after (or before) a cursor, the sort values of the last (or
first) row shown, and read through the index that matches the sort with ``LIMIT``; nothing is
counted or skipped. How many rows there are is shown up to ``COUNT_LIMIT`` ("10,000+" beyond), a
count that stops early. A cursor that cannot be read starts again at the first page.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import F, Model, Q, QuerySet
from django.db.models.expressions import OrderBy

COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Key:
    """One sort key: a field or annotation of the rows. ``nullable`` keys sort their nulls last."""

    name: str
    descending: bool = False
    nullable: bool = False


@dataclass(frozen=True)
class KeysetPage:
    items: list[Any]
    next_cursor: str | None
    previous_cursor: str | None
    count: int  # at most COUNT_LIMIT
    count_capped: bool  # there are more than COUNT_LIMIT

    @property
    def is_first(self) -> bool:
        return self.previous_cursor is None


def keyset_page(
    rows: QuerySet, keys: list[Key], *, size: int, after: str | None = None, before: str | None = None
) -> KeysetPage:
    """The ``size`` rows after cursor ``after`` (or before ``before``; the first page with neither)."""
    backwards = before is not None and _decode(before, keys) is not None
    cursor = _decode(before if backwards else after, keys)
    page = rows
    if cursor is not None:
        try:
            page = rows.filter(_beyond(keys, cursor, backwards=backwards))
        except (ValidationError, ValueError, TypeError):  # values the fields cannot take: start over
            cursor, backwards = None, False
    page = page.order_by(*ordering(keys, reverse=backwards))
    items = list(page[: size + 1])
    more = len(items) > size
    items = items[:size]
    if backwards:
        items.reverse()
    counted = rows.order_by()[: COUNT_LIMIT + 1].count()
    has_next = more if not backwards else True
    has_previous = cursor is not None and (more if backwards else True)
    return KeysetPage(
        items=items,
        next_cursor=cursor_of(keys, items[-1]) if items and has_next else None,
        previous_cursor=cursor_of(keys, items[0]) if items and has_previous else None,
        count=min(counted, COUNT_LIMIT),
        count_capped=counted > COUNT_LIMIT,
    )


def ordering(keys: list[Key], *, reverse: bool = False) -> list[OrderBy]:
    """The ``order_by`` of ``keys`` (or its reverse: nulls first, then)."""
    result = []
    for key in keys:
        descending = key.descending != reverse
        nulls = {"nulls_first": True} if (key.nullable and reverse) else ({"nulls_last": True} if key.nullable else {})
        result.append(F(key.name).desc(**nulls) if descending else F(key.name).asc(**nulls))
    return result


def _beyond(keys: list[Key], values: list[Any], *, backwards: bool) -> Q:
    """Rows strictly after ``values`` in the keys' order (strictly before, ``backwards``).

    A first key without nulls also bounds the rows on its own (``key <= value`` and the rest), a
    range the index can start its scan from rather than a filter over the rows before the cursor.
    """
    condition = Q(pk__in=[])
    same = Q()
    for key, value in zip(keys, values, strict=True):
        condition |= same & _past(key, value, backwards=backwards)
        same &= Q(**{f"{key.name}__isnull": True}) if value is None else Q(**{key.name: value})
    first, value = keys[0], values[0]
    if len(keys) > 1 and not first.nullable and value is not None:
        condition &= Q(**{f"{first.name}__{'lte' if first.descending != backwards else 'gte'}": value})
    return condition


def _past(key: Key, value: Any, *, backwards: bool) -> Q:
    """Rows past ``value`` on this key alone; nulls come last."""
    if value is None:
        return Q(**{f"{key.name}__isnull": False}) if backwards else Q(pk__in=[])
    lookup = "lt" if key.descending != backwards else "gt"
    past = Q(**{f"{key.name}__{lookup}": value})
    if key.nullable and not backwards:
        past |= Q(**{f"{key.name}__isnull": True})
    return past


def cursor_of(keys: list[Key], row: Model) -> str:
    """The cursor of ``row`` in the order of ``keys`` (what a page's links carry)."""
    values = [_plain(getattr(row, key.name)) for key in keys]
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode(cursor: str | None, keys: list[Key]) -> list[Any] | None:
    if not cursor or len(cursor) > 1000:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(values, list) or len(values) != len(keys):
        return None
    if not all(value is None or isinstance(value, str | int | float) for value in values):
        return None
    return values


def capped_counts(parts: dict[str, QuerySet], *, limit: int | None = None) -> dict[str, int]:
    """How many rows each queryset of ``parts`` has, each counted up to ``limit`` (``COUNT_LIMIT``
    unless given; ``limit + 1`` means "more"), all in one query: a figure shown next to a list must
    not read all its rows."""
    if not parts:
        return {}
    limit = COUNT_LIMIT if limit is None else limit
    selects, params = [], []
    for rows in parts.values():
        sql, part_params = rows.order_by().values("pk")[: limit + 1].query.sql_with_params()
        selects.append(f"(SELECT COUNT(*) FROM ({sql}) AS capped)")  # noqa: S608 - Django's own SQL, values bound
        params.extend(part_params)
    with connections[next(iter(parts.values())).db].cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(selects)}", params)  # noqa: S608 - as above
        return dict(zip(parts, cursor.fetchone(), strict=True))
