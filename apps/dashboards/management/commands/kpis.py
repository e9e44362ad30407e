from django.core.management.base import BaseCommand
from tqdm import tqdm

from apps.dashboards.services import rollups_differing, rollups_rebuild, subjects_count


class Command(BaseCommand):
    help = (
        "KPI rollups: 'check' compares them with a recomputation from the timeline, messages and cases; "
        "'rebuild' recomputes every fact and rollup (after changing KPI_TIME_ZONE, or to repair)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["check", "rebuild"])

    def handle(self, *args, action: str, **options) -> None:
        if action == "rebuild":
            with tqdm(total=subjects_count(), unit="subject", disable=None, desc="Rebuilding KPIs") as bar:
                rows = rollups_rebuild(progress=bar.update)
            self.stdout.write(self.style.SUCCESS(f"Rebuilt {rows:,} rollup rows."))
            return
        differing = rollups_differing()
        if differing:
            for key in differing[:20]:
                self.stdout.write(f"differs: {key}")
            self.stderr.write(f"{len(differing):,} rollup rows differ from a recomputation; run 'kpis rebuild'.")
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("The rollups match a recomputation."))
