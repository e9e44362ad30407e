from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ingest.models import InboundMessage
from apps.ingest.services import REPLAYABLE, messages_replay
from apps.partners.models import Partner


class Command(BaseCommand):
    help = "Replay dead letters (failed, dead or partially processed messages) after the cause is fixed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="Message ids to replay.")
        parser.add_argument("--all", action="store_true", help="Replay every dead letter.")
        parser.add_argument("--partner", help="With --all: only this partner's dead letters.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["ids"] and not options["all"]:
            raise CommandError("Give message ids, or --all.")
        messages = InboundMessage.objects.filter(status__in=REPLAYABLE)
        if options["ids"]:
            messages = messages.filter(pk__in=options["ids"])
        if options["partner"]:
            if not Partner.objects.filter(code=options["partner"]).exists():
                raise CommandError(f"Unknown partner {options['partner']!r}.")
            messages = messages.filter(partner__code=options["partner"])
        count = messages_replay(messages.values_list("pk", flat=True))
        self.stdout.write(f"{count} message(s) queued again.")
