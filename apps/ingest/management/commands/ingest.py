import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.ingest.mapping import unmapped_explained
from apps.ingest.models import InboundMessage
from apps.ingest.parsers import known_formats
from apps.ingest.services import (
    MessageRejected,
    Preview,
    message_fail,
    message_preview,
    message_process,
    message_receive,
)
from apps.partners.models import Partner
from apps.timeline.models import Milestone
from apps.timeline.reactions import reacting_every
from controltower.collector import tuned_for_batches

RAW_SHOWN = 120  # characters of an event's source fragment printed by --dry-run
# With --sync, detection, KPIs and the other reactions run over the orders of all files processed
# in this many seconds, so an order spread over many files of a load is reacted to once a round.
REACT_EVERY_SECONDS = 5.0


class Command(BaseCommand):
    help = "Ingest files or folders through the same pipeline as every other channel."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="Files or folders (read recursively).")
        parser.add_argument("--partner", help="Sending partner code (EDI files are identified by their sender ids).")
        parser.add_argument("--format", default="auto", help="auto (default), x12, edifact, csv, json, ...")
        parser.add_argument("--sync", action="store_true", help="Process in this process instead of a worker.")
        parser.add_argument("--json", action="store_true", help="Print each message as JSON with its events.")
        parser.add_argument("--dry-run", action="store_true", help="Parse and print; store and apply nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        _check_format(options["format"])
        files = _files(options["paths"])
        partner = _partner(options["partner"])
        if options["dry_run"]:
            self._preview(files, partner, options)
            return
        reports = []
        with tuned_for_batches(), reacting_every(REACT_EVERY_SECONDS) as checkpoint:
            for path in tqdm(files, unit="file", disable=None, desc="Ingesting"):
                reports.append(self._ingest(path, partner, options))
                checkpoint()
        if options["json"]:
            self.stdout.write(json.dumps(reports, indent=2, default=str))
        else:
            self._summary(reports)
        if any(report["error"] for report in reports):
            raise CommandError(f"{sum(1 for r in reports if r['error'])} file(s) failed; see the reasons above.")

    def _ingest(self, path: Path, partner: Partner | None, options: dict[str, Any]) -> dict[str, Any]:
        try:
            message, created = message_receive(
                body=_read(path),
                source=InboundMessage.Source.FILE,
                partner=partner,
                format=options["format"],
                filename=path.name,
                enqueue=not options["sync"],
            )
        except MessageRejected as exc:
            return {"file": str(path), "id": None, "status": "refused", "duplicate": False, "error": str(exc)}
        processed_here = options["sync"] and created
        outcome = self._process(message, keep_events=options["json"]) if processed_here else None
        message.refresh_from_db()
        report = {
            "file": str(path),
            "id": message.pk,
            "status": message.status,
            "duplicate": not created,
            "format": message.format,
            "partner": message.partner.code if message.partner else None,
            "events": message.events_count,
            "applied": message.applied_count,
            "duplicates": message.duplicate_count,
            "parked": message.parked_count,
            "warnings": message.warnings,
            "unmapped_codes": message.unmapped_codes,
            "error": message.error if message.is_dead_letter else "",
        }
        if options["json"]:
            if outcome is not None:
                report["events"] = [event.to_json() for event in outcome.events]
            else:
                report["events"] = list(
                    Milestone.objects.filter(source_message_id=message.pk).values_list("payload", flat=True)
                )
        return report

    def _process(self, message: InboundMessage, *, keep_events: bool = False) -> Any:
        """Process here, as a worker would: a failure the pipeline did not foresee leaves the message
        a failed dead letter with the reason (a worker does so once its retries are spent), and the
        report names it, rather than ending the command."""
        try:
            return message_process(message.pk, keep_events=keep_events)
        except Exception as exc:
            message_fail(message.pk, f"processing failed: {exc!r}")
            return None

    def _summary(self, reports: list[dict[str, Any]]) -> None:
        stored = [r for r in reports if r["id"] and not r["duplicate"]]
        self.stdout.write(
            f"Messages stored {len(stored)}, duplicates {sum(1 for r in reports if r['duplicate'])}; "
            f"events applied {_total(reports, 'applied')}, already applied {_total(reports, 'duplicates')}, "
            f"uncorrelated (parked) {_total(reports, 'parked')}"
        )
        pending = [r for r in reports if r["status"] == InboundMessage.Status.RECEIVED]
        if pending:
            self.stdout.write(f"{len(pending)} message(s) queued for a worker (use --sync to process here).")
        for report in reports:
            for warning in report.get("warnings") or []:
                self.stdout.write(self.style.WARNING(f"  {report['file']}: {warning}"))
            if report["error"]:
                self.stdout.write(self.style.ERROR(f"  FAILED {report['file']}: {report['error']}"))

    def _preview(self, files: list[Path], partner: Partner | None, options: dict[str, Any]) -> None:
        previews = []
        for path in files:
            preview = _preview_of(path, partner, options["format"])
            document = preview.document
            previews.append(
                {
                    "file": str(path),
                    "format": preview.format,
                    "partner": preview.partner,
                    "channel": preview.channel,
                    "mapping_version": preview.mapping_version,
                    "error": preview.error,
                    "warnings": [*document.warnings, *document.unsupported] if document else [],
                    "unmapped_codes": document.unmapped_codes if document else [],
                    "not_mapped": unmapped_explained(preview.format, document.unmapped_codes) if document else [],
                    "acknowledgments": [ack.status for ack in document.acknowledgments] if document else [],
                    "events": [event.to_json() for event in document.events] if document else [],
                }
            )
        if options["json"]:
            self.stdout.write(json.dumps(previews, indent=2, default=str))
            return
        for preview in previews:
            status = f"error: {preview['error']}" if preview["error"] else f"{len(preview['events'])} event(s)"
            read_with = (
                f", channel {preview['channel']} mapping v{preview['mapping_version']}" if preview["channel"] else ""
            )
            self.stdout.write(f"{preview['file']} [{preview['format']}, {preview['partner']}{read_with}]: {status}")
            for event in preview["events"]:
                refs = ", ".join(f"{r['kind']} {r['value']}" for r in event.get("references", []))
                self.stdout.write(f"  {event['occurred_at']}  {event['kind']}  {refs}")
                if event.get("raw"):
                    self.stdout.write(f"      from {_fragment(event['raw'])}")
            for line in preview["not_mapped"]:
                self.stdout.write(self.style.WARNING(f"  not mapped: {line}"))
            for warning in preview["warnings"]:
                self.stdout.write(self.style.WARNING(f"  {warning}"))


def _fragment(raw: str, limit: int = RAW_SHOWN) -> str:
    """The source fragment an event came from, on one line, its start and end kept when it is longer
    than ``limit`` characters (an EDI loop's own segments come after the header's)."""
    line = " ".join(raw.split())
    return line if len(line) <= limit else f"{line[: limit // 3]} … {line[-(limit - limit // 3 - 3) :]}"


def _total(reports: list[dict[str, Any]], key: str) -> int:
    return sum(report[key] for report in reports if isinstance(report.get(key), int))


def _preview_of(path: Path, partner: Partner | None, fmt: str) -> Preview:
    """What the file would become; a file refused at the door says why, as it would when ingested."""
    try:
        body = _read(path)
        if not body:
            raise MessageRejected("the message is empty")
    except MessageRejected as exc:
        return Preview(format=None if fmt == "auto" else fmt, partner=partner and partner.code, error=str(exc))
    return message_preview(body=body, format=fmt, partner=partner)


def _check_format(name: str) -> None:
    formats = ["auto", *known_formats()]
    if name not in formats:
        raise CommandError(f"Unknown format {name!r}; use one of: {', '.join(formats)}.")


def _read(path: Path) -> bytes:
    """The file's bytes; a file that cannot be read (permissions, a vanished file) is refused
    like an empty one, and the other files are still ingested."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MessageRejected(f"cannot read the file: {exc.strerror or exc}") from exc


def _files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{name}: no such file or folder")
    return files


def _partner(code: str | None) -> Partner | None:
    if not code:
        return None
    partner = Partner.objects.filter(code=code).first()
    if partner is None:
        raise CommandError(f"Unknown partner {code!r}; create it with `manage.py partner {code} --kind ...`.")
    return partner
