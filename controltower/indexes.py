"""Indexes written the way each database can take them."""

from typing import Any

from django.db import models
from django.db.models.expressions import OrderBy


class NullsLastIndex(models.Index):
    """An index with ``F(...).desc(nulls_last=True)`` keys, as a list sorting that way needs on
    PostgreSQL. SQLite cannot say NULLS LAST in an index, and needs not: its nulls come last in a
    descending order anyway, so there the keys are plain ``DESC``."""

    def create_sql(self, model: type[models.Model], schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor != "sqlite":
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        plain = self.clone()
        plain.expressions = tuple(_without_nulls(expression) for expression in self.expressions)
        return models.Index.create_sql(plain, model, schema_editor, using=using, **kwargs)


def _without_nulls(expression: Any) -> Any:
    if isinstance(expression, OrderBy) and expression.descending and expression.nulls_last:
        return OrderBy(expression.expression, descending=True)
    return expression
