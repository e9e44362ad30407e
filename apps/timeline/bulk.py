"""Writing many new rows at the speed of the database.

On PostgreSQL the rows are copied (``COPY``) into a staging table of this session, then moved
with one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: each row is handed over once, with
none of the ORM's per-field preparation, and rows that already exist are skipped by the
database's own unique indexes. Elsewhere (SQLite, the demo's default) it is ``bulk_create``.
"""

import zlib
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import Field, JSONField, Model, QuerySet
from django.utils import timezone

BATCH_SIZE = 500
ROWS_PER_STATEMENT = 2000


def insert_new(model: type[Model], rows: Sequence[Model]) -> None:
    """Insert ``rows`` (unsaved instances), skipping any that a unique constraint already holds.

    Like ``bulk_create(ignore_conflicts=True)``: every field but the primary key is written, and
    the instances get no primary key.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(rows, ignore_conflicts=True, batch_size=BATCH_SIZE)
        return
    columns = [field for field in model._meta.concrete_fields if not field.primary_key]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(column.column) for column in columns)
    # Named after its columns too: a session that outlives a migration never copies into a
    # staging table of the old shape.
    staging = connection.ops.quote_name(f"staging_{model._meta.db_table}_{zlib.crc32(names.encode()):08x}")
    readers = [_reader(column) for column in columns]
    # Every name below is a table or column of the model, quoted; no value is ever in the SQL.
    create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS SELECT {names} FROM {table}"  # noqa: S608
    move = f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING"  # noqa: S608
    # One transaction at least: the staging table empties itself at every commit.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(f"{create} WITH NO DATA")
        with cursor.cursor.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([read(row) for read in readers])
        cursor.execute(move)
        cursor.execute(f"TRUNCATE {staging}")


def row_sources(
    model: type[Model], columns: Sequence[str], rows: Sequence[Sequence], *, chunk: int = ROWS_PER_STATEMENT
) -> Iterator[tuple[str, list]]:
    """The rows as the source of an ``INSERT ... <source>``, at most ``chunk`` rows a statement,
    with its parameters.

    On PostgreSQL a chunk is one JSON array of arrays, dumped at once by ``json_text`` and read
    back with one cast per column: one parameter whatever the rows, where a ``VALUES`` list has the
    driver split the statement at each of thousands of placeholders and quote every value.
    Elsewhere it is a ``VALUES`` list within the database's limit of parameters. ``columns`` are
    field names or attnames; a JSON column takes the value itself (a list, say), not its dump.
    """
    fields = [model._meta.get_field(name) for name in columns]
    if connection.vendor == "postgresql":
        values = ", ".join(
            f"r -> {index}" if isinstance(f, JSONField) else f"(r ->> {index})::{f.db_type(connection)}"
            for index, f in enumerate(fields)
        )
        source = f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r"  # noqa: S608 (positions and types only)
        for start in range(0, len(rows), chunk):
            yield source, [json_text(rows[start : start + chunk])]
        return
    dumped = [index for index, f in enumerate(fields) if isinstance(f, JSONField)]
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    size = min(chunk, connection.ops.bulk_batch_size(columns, rows)) or 1
    for start in range(0, len(rows), size):
        batch = rows[start : start + size]
        params = [json_text(v) if i in dumped else v for values in batch for i, v in enumerate(values)]
        yield "VALUES " + ", ".join([row] * len(batch)), params


def json_text(value: Any) -> str:
    """``value`` as JSON text for PostgreSQL to read back exactly: datetimes in ISO 8601, decimals
    as their own digits, keys as text. orjson writes it about ten times faster than ``json.dumps``,
    which took 7% of a sync load's time in a profile."""
    return orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS).decode()


def _plain(value: Any) -> str | list:
    """What orjson does not write itself: a decimal as its digits, a named tuple as a list."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def delete_rows(queryset: QuerySet) -> int:
    """Delete the rows ``queryset`` selects with one ``DELETE``, reading none of them back.

    For rows whose dependents the caller deletes itself (or has none): ``QuerySet.delete()``
    would load every row first to cascade and send signals. Returns how many were deleted.
    """
    return queryset._raw_delete(queryset.db)


def _reader(field: Field) -> Callable[[Model], Any]:
    """How to read a field's value off an instance for ``COPY``."""
    name = field.attname
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        now = timezone.now()
        return lambda row: now
    if isinstance(field, JSONField):
        return lambda row: None if getattr(row, name) is None else json_text(getattr(row, name))
    return lambda row: getattr(row, name)
