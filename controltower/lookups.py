"""``field__any=values`` and ``field__each=values``: membership in a list sent to PostgreSQL as
one array.

``field__in=[...]`` writes a placeholder per value; Django prepares every value and psycopg
quotes each one into the statement, which for the thousands of ids a batch names costs more than
the query itself. ``field = ANY(%s)`` hands the whole list over as one parameter. Elsewhere
(SQLite) both are the same ``IN`` as ``__in``.

``__each`` is for a long list of keys looked up in a large table: ``field IN (SELECT
unnest(%s))`` has the database look each value up through the column's index. Given ``= ANY``
and a thousand values, PostgreSQL's planner may rather read the whole table, and join the
query's other tables by hashing them whole too, which it believes cheaper until the tables are
far larger: a cost that grows with the data, not with the list.
"""

from typing import Any

from django.db.models import CharField, Field, ForeignObject, Lookup, TextField
from django.db.models.lookups import In


@Field.register_lookup
@ForeignObject.register_lookup  # relations look only at their own class's lookups
class Any_(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self) -> list:
        return [value for value in self.rhs if value is not None]

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        return In(self.lhs, self.rhs).as_sql(compiler, connection)

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        if not self.rhs:
            return In(self.lhs, self.rhs).as_sql(compiler, connection)  # nothing matches
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        array = f"%s::{_array_of(self.lhs.output_field, connection)}"
        return self.membership(lhs_sql, array), [*lhs_params, _array_literal(self.rhs)]

    @staticmethod
    def membership(column: str, array: str) -> str:
        return f"{column} = ANY({array})"


@Field.register_lookup
@ForeignObject.register_lookup
class Each(Any_):
    lookup_name = "each"

    @staticmethod
    def membership(column: str, array: str) -> str:
        return f"{column} IN (SELECT unnest({array}))"


def _array_literal(values: list) -> str | list:
    """Whole numbers and strings as one array literal, ``{1,2}`` or ``{"a","b"}``: a single string
    to quote, where psycopg would adapt and quote each element. Other values go as the list."""
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    if all(isinstance(value, str) for value in values):
        return "{" + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values) + "}"
    return values


def _array_of(field: Field, connection: Any) -> str:
    """The array type the list is read as: text for text (a ``varchar(n)`` cast would cut longer
    values short, so they could match), else the column's own type, so its index is used."""
    if isinstance(field, CharField | TextField):
        return "text[]"
    return f"{field.db_type(connection)}[]"
