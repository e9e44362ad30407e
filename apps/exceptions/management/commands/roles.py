from typing import Any

from django.core.management.base import BaseCommand

from apps.exceptions.roles import roles_ensure


class Command(BaseCommand):
    help = "Create the role groups (Customer Service, Finance, Supply Chain, Integration Admin) with their permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, group in roles_ensure().items():
            self.stdout.write(f"{name}: {group.permissions.count()} permissions")
