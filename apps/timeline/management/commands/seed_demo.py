from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.exceptions.services import detect
from apps.inventory.services import stock_accuracy_record
from apps.outbound.demo import outbound_demo_upsert
from apps.predictions.services import backtest_run, predictions_refresh_all
from apps.timeline.demo import (
    DEFAULT_ORDERS,
    DEFAULT_SEED,
    MIN_ORDERS,
    demo_role_users_upsert,
    demo_user_upsert,
    seed_demo,
)


class Command(BaseCommand):
    help = (
        "Load a realistic demo: partners and their channels, then orders in every stage told as events "
        "through apply_events. Safe to run again: the second run applies nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--orders", type=int, default=DEFAULT_ORDERS, help=f"orders to create (default {DEFAULT_ORDERS})"
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the same seed builds the same world")
        parser.add_argument("--user", help="create or update this demo superuser")
        parser.add_argument("--password", help="the demo user's password")

    def handle(
        self, *args: Any, orders: int, seed: int, user: str | None, password: str | None, **options: Any
    ) -> None:
        if bool(user) != bool(password):
            raise CommandError("--user and --password go together")
        if orders < MIN_ORDERS:
            raise CommandError(f"--orders must be at least {MIN_ORDERS} to show every stage")
        summary = seed_demo(orders=orders, seed=seed, progress=options["verbosity"] > 0)
        subscriptions = outbound_demo_upsert()
        predicted = predictions_refresh_all()
        backtest_run()
        swept = detect()
        stock_accuracy_record(now=timezone.now())
        if user and password:
            demo_user_upsert(username=user, password=password)
            roles = demo_role_users_upsert(prefix=user, password=password)
        self.stdout.write(
            f"Partners {summary.partners}, orders {summary.orders}, shipments {summary.shipments}, "
            f"milestones {summary.milestones}, parked {summary.parked}"
        )
        self.stdout.write(
            f"Events {summary.events}: applied {summary.applied} (of which {summary.unparked} after waiting parked), "
            f"duplicates {summary.duplicates}, rejected {summary.rejected}"
        )
        self.stdout.write(f"Outbound: {subscriptions} subscriptions writing to outbox folders")
        self.stdout.write(f"Predictions: {predicted} shipments on their way, and a backtest of the history")
        self.stdout.write(
            f"Exceptions: the sweep opened {len(swept.opened)} cases (stock, dead letters, parked events too)"
        )
        self.stdout.write("Stages: " + ", ".join(f"{stage} {count}" for stage, count in summary.stages.items()))
        if user:
            self.stdout.write(self.style.SUCCESS(f"Demo login: {user}"))
            self.stdout.write("Role logins: " + ", ".join(role.get_username() for role in roles))
