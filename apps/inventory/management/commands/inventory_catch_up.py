from django.core.management.base import BaseCommand

from apps.inventory.services import ledger_catch_up


class Command(BaseCommand):
    help = "Book into the stock ledger and positions every stored inventory event it does not hold yet."

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"{ledger_catch_up()} inventory events booked")
