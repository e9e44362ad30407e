"""Predicted delivery on the demo's history: the backtest's figures against the bar it must clear.

Seeds the demo (seed ``DEFAULT_SEED``, ``PREDICTION_ORDERS`` orders, 1500 by default, its clock
fixed at ``NOW``) on its own database (``BENCH_DATABASE_URL``, default a fresh SQLite file under
``var/bench/``), runs the backtest, then predicts every open shipment; prints the figures per
stage and whether, at pickup, the predictions beat the carrier's estimate on the same shipments,
hold 80 % ± 5 % of deliveries inside p10–p90 and score a lower Brier than the base rate. Writes
``var/bench/predictions.json``; exits 1 when a target is missed.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "bench"
OUT.mkdir(parents=True, exist_ok=True)
DB_FILE = OUT / "predictions.sqlite3"
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{DB_FILE}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controltower.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from apps.predictions.services import backtest_run, predictions_refresh_all  # noqa: E402
from apps.timeline.demo import DEFAULT_SEED, seed_demo  # noqa: E402

ORDERS = int(os.environ.get("PREDICTION_ORDERS", "1500"))
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
COVERAGE = (0.75, 0.85)


def timed(work: Callable[[], object]) -> tuple[object, float, int]:
    """The result of ``work``, its seconds and its queries."""
    queries = 0

    def count(execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    started = time.perf_counter()
    with connection.execute_wrapper(count):
        result = work()
    return result, time.perf_counter() - started, queries


def reset_database() -> None:
    if connection.vendor == "sqlite" and DB_FILE.exists():
        connection.close()
        DB_FILE.unlink()
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def targets(pickup: dict) -> list[tuple[str, bool]]:
    model, carrier = pickup["model"], pickup["carrier_estimate"]
    ours, theirs = carrier["model_mae_hours_same_shipments"], carrier["mae_hours"]
    low, high = COVERAGE
    return [
        (f"MAE at pickup {ours} h below the carrier's {theirs} h (same shipments)", ours < theirs),
        (
            f"p10-p90 holds {model['coverage_p10_p90']:.0%} of deliveries (75-85 %)",
            low <= model["coverage_p10_p90"] <= high,
        ),
        (
            f"Brier {model['brier']} below the base rate's {model['base_rate_brier']}",
            model["brier"] < model["base_rate_brier"],
        ),
    ]


def main() -> int:
    reset_database()
    summary = seed_demo(orders=ORDERS, seed=DEFAULT_SEED, now=NOW)
    report, replay_seconds, replay_queries = timed(backtest_run)
    predicted, refresh_seconds, refresh_queries = timed(lambda: predictions_refresh_all(now=NOW))
    figures = report.figures
    world = f"seed {DEFAULT_SEED}, {summary.orders} orders, {summary.shipments} shipments"
    print(f"Demo: {world}, clock at {NOW:%Y-%m-%d %H:%M} UTC")
    print(
        f"Backtest: {replay_seconds:.1f} s, {replay_queries} queries; refresh of {predicted} open shipments: "
        f"{refresh_seconds:.1f} s, {refresh_queries} queries"
    )
    headings = ("ours MAE h", "carrier MAE h", "promise MAE h", "in p10-p90", "Brier", "base")
    print(f"{'stage':<18}" + "".join(f"{heading:>15}" for heading in headings))
    for stage in figures["stages"]:
        overall = stage["carriers"][0]
        model, carrier = overall["model"], overall["carrier_estimate"]
        cells = (model["mae_hours"], carrier["mae_hours"], overall["promise"]["mae_hours"])
        cells += (model["coverage_p10_p90"], model["brier"], model["base_rate_brier"])
        print(f"{stage['label']:<18}" + "".join(f"{cell!s:>15}" for cell in cells))
    checks = targets(figures["stages"][0]["carriers"][0])
    for text, passed in checks:
        print(f"{'ok ' if passed else 'MISSED'} {text}")
    (OUT / "predictions.json").write_text(
        json.dumps({"seed": DEFAULT_SEED, "orders": ORDERS, "figures": figures}, indent=2)
    )
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
