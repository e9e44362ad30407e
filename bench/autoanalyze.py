"""Table statistics kept fresh as autovacuum keeps them, on a server that runs without it.

PostgreSQL's planner chooses plans by each table's statistics. A production server keeps them
current with autovacuum, which analyzes a table once more than ``autovacuum_analyze_threshold``
rows plus ``autovacuum_analyze_scale_factor`` of it changed since its last analysis, checking
every ``autovacuum_naptime``. A server with autovacuum off keeps an empty table's statistics for
good, and plans made for an empty table (reading a partial index whole for every order, say) get
slower with every row loaded: a benchmark there would measure the missing statistics, not the
pipeline. While a benchmark runs on such a server, a thread does what autovacuum would: the same
rule with the server's own settings, ``ANALYZE`` on a connection of its own.
"""

import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

DUE = """
    SELECT s.schemaname, s.relname
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float
        + current_setting('autovacuum_analyze_scale_factor')::float * greatest(c.reltuples, 0)
"""


class AutoAnalyze:
    """``with AutoAnalyze(connect):`` keeps statistics current while the block runs, if the server
    does not; ``runs`` and ``seconds`` say how often and how long it analyzed."""

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self.connect = connect
        self.runs = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "AutoAnalyze":
        with self.connect() as conn:
            autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
            naptime = conn.execute("SELECT current_setting('autovacuum_naptime')::interval").fetchone()[0]
        if autovacuum == "off":
            self._thread = threading.Thread(
                target=self._run, args=(naptime.total_seconds(),), name="autoanalyze", daemon=True
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
                for schema, table in conn.execute(DUE).fetchall():
                    started = time.perf_counter()
                    conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
                    self.seconds += time.perf_counter() - started
                    self.runs += 1
