import json
from datetime import UTC, date, datetime
from functools import partial

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.predictions.services import backtest_run, predictions_refresh_all

COLUMNS = ("n", "MAE h", "p90 err h", "in p10-p90", "Brier", "base Brier", "carrier n", "carrier MAE h", "ours there")


def _date(value: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
    except ValueError as error:
        raise CommandError(f"--since: {value!r} is not a date (YYYY-MM-DD)") from error


def _cell(value: object) -> str:
    return "—" if value is None else f"{value:.0%}" if isinstance(value, float) and value <= 1 else str(value)


class Command(BaseCommand):
    help = (
        "Predicted delivery: 'backtest' replays history as known at each milestone and scores the "
        "predictions against the carrier's estimate and the promise; 'refresh' relearns and predicts now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["backtest", "refresh"])
        parser.add_argument("--since", type=_date, help="Score predictions made from this date (UTC) on.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the figures as JSON.")

    def handle(self, *args, action: str, since: datetime | None, as_json: bool, **options) -> None:
        if action == "refresh":
            self.stdout.write(f"Shipments on their way predicted: {predictions_refresh_all():,}.")
            return
        progress = partial(tqdm, unit="prediction", desc="Replaying", disable=None, file=self.stderr._out)
        figures = backtest_run(since=since, progress=progress).figures
        if as_json:
            self.stdout.write(json.dumps(figures, indent=2))
        else:
            self._print(figures)

    def _print(self, figures: dict) -> None:
        for line in figures["assumptions"]:
            self.stdout.write(f"Assumed: {line}")
        header = f"{'stage':<18}{'carrier':<24}" + "".join(f"{name:>14}" for name in COLUMNS)
        self.stdout.write(header)
        for stage in figures["stages"]:
            for row in stage["carriers"]:
                model, carrier = row["model"], row["carrier_estimate"]
                cells = (
                    model["n"],
                    model["mae_hours"],
                    model["p90_abs_error_hours"],
                    _cell(model["coverage_p10_p90"]),
                    model["brier"],
                    model["base_rate_brier"],
                    carrier["n"],
                    carrier["mae_hours"],
                    carrier["model_mae_hours_same_shipments"],
                )
                line = f"{stage['label']:<18}{row['carrier'][:23]:<24}"
                self.stdout.write(line + "".join(f"{'—' if c is None else c!s:>14}" for c in cells))
