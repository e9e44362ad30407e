"""Several "first N rows of each" reads at once, in the fewest queries the database allows."""

from typing import Any

from django.db import connection
from django.db.models import QuerySet


def rows_of_slices(parts: list[QuerySet]) -> list[Any]:
    """The rows of several sliced querysets: one ``UNION ALL`` where the database takes a
    ``LIMIT`` inside one (PostgreSQL), one query each where it does not (SQLite, the demo's)."""
    if not parts:
        return []
    if connection.features.supports_slicing_ordering_in_compound:
        return list(parts[0].union(*parts[1:], all=True))
    return [row for part in parts for row in part]
