"""Tables vacuumed and analyzed as autovacuum does it, on a server that runs without it.

A production PostgreSQL server runs autovacuum: it analyzes a table once more than
``autovacuum_analyze_threshold`` rows plus ``autovacuum_analyze_scale_factor`` of it changed since
its last analysis, and vacuums it once its dead rows (or, since PostgreSQL 13, its rows inserted
since the last vacuum) pass the matching thresholds, checking every ``autovacuum_naptime``. On a
server with autovacuum off, an empty table's statistics stay for good, so plans made for an empty
table (reading a partial index whole for every order, say) get slower with every row, and a queue
table's deleted rows are never cleaned away: a benchmark there would measure the missing
maintenance, not the pipeline. While a benchmark runs on such a server, a thread does what
autovacuum would: the same rules with the server's own settings, on a connection of its own.
"""

import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

DUE = """
    WITH t AS (
        SELECT s.schemaname, s.relname, s.n_dead_tup, s.n_ins_since_vacuum, s.n_mod_since_analyze,
            greatest(c.reltuples, 0) AS size
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    ), due AS (
        SELECT schemaname, relname,
            n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float
                + current_setting('autovacuum_vacuum_scale_factor')::float * size
            OR n_ins_since_vacuum > current_setting('autovacuum_vacuum_insert_threshold')::float
                + current_setting('autovacuum_vacuum_insert_scale_factor')::float * size AS to_vacuum,
            n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float
                + current_setting('autovacuum_analyze_scale_factor')::float * size AS to_analyze
        FROM t
    )
    SELECT schemaname, relname, to_vacuum, to_analyze FROM due WHERE to_vacuum OR to_analyze
"""


class AutoVacuum:
    """``with AutoVacuum(connect):`` keeps tables vacuumed and analyzed while the block runs, if
    the server does not; ``runs`` and ``seconds`` say how often and how long it worked."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self.connect = connect
        self.runs = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "AutoVacuum":
        with self.connect() as conn:
            autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
            naptime = conn.execute("SELECT current_setting('autovacuum_naptime')::interval").fetchone()[0]
        if autovacuum == "off":
            self._thread = threading.Thread(
                target=self._run, args=(naptime.total_seconds(),), name="autovacuum", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def emulated(self) -> bool:
        return self._thread is not None

    def _run(self, naptime: float) -> None:
        with self.connect() as conn:
            conn.autocommit = True
            while not self._stop.wait(naptime):
                for schema, table, vacuum, analyze in conn.execute(DUE).fetchall():
                    started = time.perf_counter()
                    conn.execute(_statement(schema, table, vacuum=vacuum, analyze=analyze))
                    self.seconds += time.perf_counter() - started
                    self.runs += 1


def _statement(schema: str, table: str, *, vacuum: bool, analyze: bool) -> sql.Composed:
    name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if vacuum:
        return sql.SQL("VACUUM (ANALYZE {}) {}").format(sql.SQL("TRUE" if analyze else "FALSE"), name)
    return sql.SQL("ANALYZE {}").format(name)
