"""Reading ``timestamptz`` columns at the speed of psycopg's compiled loader.

Django registers a loader of its own on every PostgreSQL connection so each value comes back in
the connection's time zone; it subclasses psycopg's pure-Python loader, which parses each value
in Python: about 4 µs a value against 0.7 µs (in a profile, a fifth of a KPI refresh). Our
connections talk to PostgreSQL in UTC (``USE_TZ``, no database ``TIME_ZONE``), so the compiled
loader already gives what Django's does; this loader hands each value to it and only converts a
value that came back in another zone (a session whose ``TimeZone`` someone changed).
"""

import datetime
from typing import Any

from psycopg import adapters
from psycopg.adapt import Loader
from psycopg.pq import Format

_COMPILED = adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)


class UtcTimestamptzLoader(Loader):
    # Django's cursors compare this with the connection's zone and put their own loader back
    # when the two differ.
    timezone = datetime.UTC

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._parse = _COMPILED(oid, context).load

    def load(self, data: Any) -> datetime.datetime:
        value = self._parse(data)
        return value if value.tzinfo is datetime.UTC else value.astimezone(datetime.UTC)


def use_compiled_timestamps(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: on a PostgreSQL connection in UTC, read timestamps with
    ``UtcTimestamptzLoader``."""
    if connection.vendor == "postgresql" and connection.timezone == datetime.UTC:
        connection.connection.adapters.register_loader("timestamptz", UtcTimestamptzLoader)
