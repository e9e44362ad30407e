"""``manage.py simulate``: a live feed of order-to-cash stories sent through the real receivers."""

import ipaddress
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.exceptions.services import detect
from apps.ingest import services, simulator


class Command(BaseCommand):
    help = (
        "Send realistic partner feeds (canonical JSON, X12 856/945/214, EDIFACT DESADV/IFTSTA, EasyPost "
        "webhooks, CSV) with faults to a running server, round after round, until --duration or Ctrl-C. "
        "Partners, channels and tokens are set up in this database first: it must be the server's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=2.0, help="Messages per second (default 2).")
        parser.add_argument("--duration", type=float, default=0, help="Seconds to run; 0 (default): until Ctrl-C.")
        parser.add_argument("--orders-per-batch", type=int, default=20, help="Orders per round (default 20).")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="The server to send to.")
        parser.add_argument("--seed", type=int, help="Seed of the first round (default: from the clock).")
        parser.add_argument("--once", action="store_true", help="Send one round, then stop.")
        parser.add_argument("--no-faults", action="store_true", help="Only well-behaved feeds.")
        parser.add_argument("--inbox-dir", type=Path, help="Where inbox files go (default: settings.INBOX_DIR).")
        parser.add_argument("--allow-remote", action="store_true", help="Allow a base URL that is not loopback.")

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = _checked_url(options["base_url"], allow_remote=options["allow_remote"])
        if not (math.isfinite(options["rate"]) and options["rate"] > 0):
            raise CommandError(f"--rate must be a positive number of messages per second, not {options['rate']}")
        if not 0 < options["orders_per_batch"] <= simulator.MAX_ORDERS:
            raise CommandError(f"--orders-per-batch must be between 1 and {simulator.MAX_ORDERS}")
        if not (math.isfinite(options["duration"]) and options["duration"] >= 0):
            raise CommandError(f"--duration must be a number of seconds, 0 or more, not {options['duration']}")
        seed = options["seed"] if options["seed"] is not None else int(time.time())
        until = time.monotonic() + options["duration"] if options["duration"] else None
        inbox = options["inbox_dir"] or Path(settings.INBOX_DIR)
        if inbox.exists() and not inbox.is_dir():
            raise CommandError(f"--inbox-dir {inbox} is a file, not a folder")
        simulation = simulator.simulation_setup()
        self.stdout.write(f"Simulating to {base_url} at {options['rate']:g} msg/s from seed {seed}; Ctrl-C stops.")
        round_number = 0
        try:
            while until is None or time.monotonic() < until:
                self._round(seed + round_number, simulation, base_url, inbox, until, options)
                round_number += 1
                if options["once"]:
                    break
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def _round(
        self,
        seed: int,
        simulation: simulator.Simulation,
        base_url: str,
        inbox: Path,
        until: float | None,
        options: dict[str, Any],
    ) -> None:
        start = timezone.now() - simulator.STORY_SPAN
        messages = simulator.generate(seed, options["orders_per_batch"], not options["no_faults"], start)
        tally = simulator.send_http(messages, base_url, simulation, options["rate"], inbox_dir=inbox, until=until)
        # The jobs Celery beat runs, for a demo that has no beat: take the files just dropped into
        # the pipeline, and sweep the rules (dead letters and parked events open cases only there).
        stored_files = services.inbox_poll(inbox)
        detect()
        faults = simulator.stream_summary(messages)["faults"]
        planned = ", ".join(f"{count} {name}" for name, count in sorted(faults.items())) or "no faults"
        self.stdout.write(
            f"round {seed} ({len(messages)} messages, {planned}): {tally.line()}; {stored_files} inbox files stored"
        )


def _checked_url(url: str, *, allow_remote: bool) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - read to check it: a port that is not a number raises ValueError
    except ValueError as exc:
        raise CommandError(f"--base-url {url!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"--base-url must be an http(s) URL, not {url!r}")
    if not allow_remote and not _loopback(parts.hostname):
        raise CommandError(f"{parts.hostname} is not a loopback host; pass --allow-remote to send to it")
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
