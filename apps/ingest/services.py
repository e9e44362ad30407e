"""The ingest pipeline, top to bottom: receive (store raw) → process (parse, apply, acknowledge).

Receiving stores the exact bytes in the transaction that acknowledges them and never parses.
Processing runs in a worker: it finds the format and the sending partner, parses into canonical
events, applies them through ``apply_events`` and stores the acknowledgments, all in one
transaction, so a worker killed half way leaves the message ``received`` for the next attempt.
"""

import hashlib
import logging
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.dashboards.services import kpis_refresh_later
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.ingest.parsers import ParseContext, ParsedDocument, ParseError, detect_format, get_parser, sender_ids
from apps.outbound.services import acknowledgments_publish
from apps.partners.models import Channel, EdiIdentifier, Partner
from apps.timeline import reactions
from apps.timeline.events import CanonicalEvent, EventKind, EventSource
from apps.timeline.services import apply_events as apply_timeline_events
from apps.timeline.stages import timed

logger = logging.getLogger(__name__)

APPLY_BATCH_SIZE = 2000
APPLY_BATCH_LINES = 10_000
STUCK_AFTER = timedelta(minutes=10)
DOCUMENT_FORMATS = ("x12", "edifact", "csv", "json")
REPLAYABLE = (InboundMessage.Status.DEAD, InboundMessage.Status.FAILED, InboundMessage.Status.PARTIALLY_PROCESSED)


class MessageRejected(ValueError):
    """A payload refused at the door (empty, too large); nothing was stored."""


class PermanentFailure(Exception):
    """Processing can never succeed as things stand: the message becomes a dead letter."""


# --- receive ----------------------------------------------------------------------------------


def message_receive(
    *,
    body: bytes,
    source: str,
    partner: Partner | None = None,
    channel: Channel | None = None,
    format: str = "auto",
    idempotency_key: str | None = None,
    filename: str = "",
    content_type: str = "",
    enqueue: bool = True,
    priority: str | None = None,
) -> tuple[InboundMessage, bool]:
    """Store a payload; return it and whether it is new.

    The same payload again (same idempotency key, or same partner and body) returns the original
    message and changes nothing. A new message is queued for processing once the transaction
    commits, unless ``enqueue`` is False; ``priority`` names its queue when the receiver already
    knows what the message holds (a channel with its own priority still decides).
    """
    if not body:
        raise MessageRejected("the message is empty")
    if len(body) > settings.INGEST_MAX_MESSAGE_BYTES:
        raise MessageRejected(
            f"the message is {len(body):,} bytes; the limit is {settings.INGEST_MAX_MESSAGE_BYTES:,} bytes"
        )
    digest = hashlib.sha256(body).hexdigest()
    existing = _existing_message(partner, idempotency_key, digest)
    if existing:
        return _resent(existing), False
    try:
        with transaction.atomic():
            message = InboundMessage.objects.create(
                partner=partner,
                channel=channel,
                source=source,
                format=format or "auto",
                body=body,
                size=len(body),
                sha256=digest,
                idempotency_key=idempotency_key or None,
                filename=filename[:255],
                content_type=content_type[:100],
            )
    except IntegrityError:
        existing = _existing_message(partner, idempotency_key, digest)
        if existing is None:
            raise
        return _resent(existing), False
    if enqueue:
        transaction.on_commit(lambda: enqueue_processing([message], priority=priority))
    return message, True


def _existing_message(partner: Partner | None, key: str | None, digest: str) -> InboundMessage | None:
    same = Q(partner=partner, sha256=digest) if partner else Q(partner__isnull=True, sha256=digest)
    if key:
        same |= Q(partner=partner, idempotency_key=key)
    return InboundMessage.objects.filter(same).order_by("id").first()


def _resent(message: InboundMessage) -> InboundMessage:
    """Count a resend: the health page shows partners that send the same thing again and again."""
    InboundMessage.objects.filter(pk=message.pk).update(resent_count=F("resent_count") + 1)
    message.resent_count += 1
    return message


def enqueue_processing(messages: Iterable[InboundMessage], *, priority: str | None = None) -> None:
    from apps.ingest.tasks import process_message_task

    for message in messages:
        process_message_task.apply_async(args=[message.pk], queue=processing_queue(message, priority))


def processing_queue(message: InboundMessage, priority: str | None = None) -> str:
    """The channel's priority decides, else what the receiver saw in the message (a delivery
    among canonical events is critical, a batch of scans is bulk), else the default queue."""
    if message.channel_id and message.channel.priority != Channel.Priority.DEFAULT:
        return message.channel.priority
    return priority or "default"


# --- process ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What processing one message did; the same figures are stored on the message."""

    message: InboundMessage
    events: list[CanonicalEvent] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    parked: int = 0


def message_process(message_id: int, *, keep_events: bool = False) -> Outcome | None:
    """Parse and apply one received message. Returns None when it is not waiting (done already,
    or another worker holds it): a redelivered task is harmless.

    Locking: the message row is locked (skip locked) for the whole transaction, so two workers
    never process the same message, and a worker that dies leaves it ``received``.
    """
    with transaction.atomic():
        message = (
            InboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("partner", "channel")
            .filter(pk=message_id, status=InboundMessage.Status.RECEIVED)
            .first()
        )
        if message is None:
            return None
        message.attempts += 1
        kpis_refresh_later(message_ids=[message_id])
        try:
            with reactions.collecting():
                outcome = _process(message, keep_events=keep_events)
        except PermanentFailure as exc:
            _mark_dead(message, str(exc))
            return Outcome(message=message)
        return outcome


def message_fail(message_id: int, reason: str) -> None:
    """Retries are exhausted: keep the message as a failed dead letter with the last error."""
    failed = InboundMessage.objects.filter(pk=message_id, status=InboundMessage.Status.RECEIVED).update(
        status=InboundMessage.Status.FAILED, error=reason[:5000], processed_at=timezone.now()
    )
    if failed:
        kpis_refresh_later(message_ids=[message_id])


def _process(message: InboundMessage, *, keep_events: bool) -> Outcome:
    """What is learnt on the way (format, sender, channel) is kept even when a later step fails."""
    body = bytes(message.body)
    message.format = fmt = _format_of(message, body)
    message.partner = partner = message.partner or _identify_sender(fmt, body)
    message.channel = channel = message.channel or _default_channel(partner, fmt)
    document, parsed = _parse_stream(fmt, body, _context(partner, channel, message.received_at))

    outcome = Outcome(message=message)
    rejected: dict[str, str] = {}
    count = unmapped = 0
    source_time: datetime | None = None
    for batch in _batches((_with_source(event, partner, channel, message) for event in parsed), APPLY_BATCH_SIZE):
        result = apply_timeline_events(batch)
        count += len(batch)
        unmapped += sum(event.kind == EventKind.SHIPMENT_STATUS_UNMAPPED for event in batch)
        latest = max(event.occurred_at for event in batch)
        source_time = max(source_time, latest) if source_time else latest
        outcome.applied += len(result.applied)
        outcome.duplicates += len(result.duplicates)
        outcome.parked += len(result.parked)
        rejected.update(result.rejected)
        if keep_events:
            outcome.events += batch
    _store_acknowledgments(message, partner, channel, document)

    message.warnings = [*document.warnings, *document.unsupported, *(f"{k}: {v}" for k, v in rejected.items())]
    message.unmapped_codes = sorted(set(document.unmapped_codes))
    message.events_count, message.unmapped_count, message.source_time = count, unmapped, source_time
    message.applied_count, message.duplicate_count = outcome.applied, outcome.duplicates
    message.parked_count = outcome.parked
    partial = bool(document.unsupported or rejected)
    message.status = InboundMessage.Status.PARTIALLY_PROCESSED if partial else InboundMessage.Status.PROCESSED
    message.error = ""
    message.processed_at = timezone.now()
    message.save()
    return outcome


def _format_of(message: InboundMessage, body: bytes) -> str:
    return _resolve_format(message.format, message.channel or _only_channel(message.partner), body)


def _resolve_format(named: str, channel: Channel | None, body: bytes) -> str:
    """The format named with the message, else its channel's, else what the bytes look like."""
    if named and named != "auto":
        return named
    if channel and channel.format in DOCUMENT_FORMATS:
        return channel.format
    adapter = (channel.mapping_overrides or {}).get("adapter") if channel else None
    fmt = adapter or detect_format(body)
    if fmt is None:
        raise PermanentFailure(
            "could not tell the format: not X12, EDIFACT, canonical JSON or a known aggregator's JSON; "
            "send it with an explicit format"
        )
    return fmt


def _only_channel(partner: Partner | None) -> Channel | None:
    """A partner with a single inbound channel: files without a named channel came through it."""
    if partner is None:
        return None
    channels = [c for c in partner.channels.all() if c.active and c.direction == Channel.Direction.INBOUND]
    return channels[0] if len(channels) == 1 else None


def _identify_sender(fmt: str, body: bytes) -> Partner:
    ids = sender_ids(fmt, body)
    if not ids:
        raise PermanentFailure("the sending partner is unknown: give the partner (--partner or an API token)")
    rows = list(EdiIdentifier.objects.filter(value__in={value for _, value in ids}).select_related("partner"))
    for qualifier, value in ids:
        for row in rows:
            if row.value == value and row.qualifier in (qualifier, "GS", "UNB", "*"):
                return row.partner
    if rows:
        return rows[0].partner
    named = ", ".join(f"{qualifier}:{value}" for qualifier, value in ids)
    raise PermanentFailure(f"unknown sender {named}; add it as an EDI identifier of a partner, then replay")


def _default_channel(partner: Partner, fmt: str) -> Channel | None:
    channels = [c for c in partner.channels.all() if c.active and c.direction == Channel.Direction.INBOUND]
    return next((c for c in channels if c.format == fmt), channels[0] if channels else None)


def _context(partner: Partner, channel: Channel | None, received_at: datetime | None = None) -> ParseContext:
    return ParseContext(
        partner=partner.code,
        channel=channel.code if channel else None,
        mapping=(channel.mapping_overrides if channel else None) or {},
        time_zone=partner.time_zone,
        received_at=received_at,
    )


def _parse_stream(fmt: str, body: bytes, context: ParseContext) -> tuple[ParsedDocument, Iterable[CanonicalEvent]]:
    """The document and its events; a parser that can stream (large CSV files) yields them one by
    one, so a 100,000-row file is applied batch by batch in flat memory."""
    stream = getattr(get_parser(fmt), "iter_parse", None)
    if stream is None:
        document = _parse(fmt, body, context)
        return document, document.events
    document = ParsedDocument()
    return document, _guarded(stream(body, context, document), document, fmt, context)


def _guarded(
    events: Iterator[CanonicalEvent], document: ParsedDocument, fmt: str, context: ParseContext
) -> Iterator[CanonicalEvent]:
    """Parser failures met while streaming become dead letters, as they would before streaming."""
    count = 0
    try:
        for count, event in enumerate(events, start=1):  # noqa: B007 - the count is read after the loop
            yield event
    except ParseError as exc:
        raise PermanentFailure(str(exc)) from exc
    except Exception as exc:
        logger.exception("parser %s failed on a message from %s", fmt, context.partner)
        raise PermanentFailure(f"internal error in the {fmt} parser: {exc!r}") from exc
    if not count:
        problems = "; ".join(document.warnings[:5]) or "the document holds no rows"
        raise PermanentFailure(f"nothing could be read: {problems}")


def _batches(events: Iterable[CanonicalEvent], size: int) -> Iterator[list[CanonicalEvent]]:
    """Batches of at most ``size`` events and about APPLY_BATCH_LINES lines, for flat memory."""
    batch: list[CanonicalEvent] = []
    lines = 0
    for event in events:
        batch.append(event)
        lines += len(event.lines)
        if len(batch) >= size or lines >= APPLY_BATCH_LINES:
            yield batch
            batch, lines = [], 0
    if batch:
        yield batch


def _parse(fmt: str, body: bytes, context: ParseContext) -> ParsedDocument:
    try:
        with timed("parse"):
            return get_parser(fmt).parse(body, context)
    except ParseError as exc:
        raise PermanentFailure(str(exc)) from exc
    except Exception as exc:
        # A parser bug must not retry forever nor lose the message: it waits as a dead letter.
        logger.exception("parser %s failed on a message from %s", fmt, context.partner)
        raise PermanentFailure(f"internal error in the {fmt} parser: {exc!r}") from exc


def _with_source(
    event: CanonicalEvent, partner: Partner, channel: Channel | None, message: InboundMessage
) -> CanonicalEvent:
    source = EventSource(partner=partner.code, channel=channel.code if channel else None, message=message.pk)
    return event.model_copy(update={"source": source})


def _store_acknowledgments(
    message: InboundMessage, partner: Partner, channel: Channel | None, document: ParsedDocument
) -> None:
    OutboundMessage.objects.bulk_create(
        [
            OutboundMessage(
                inbound=message,
                partner=partner,
                channel=channel,
                format=ack.format,
                kind="997" if ack.format == "x12" else "ack",
                position=position,
                control_number=ack.control_number,
                ack_status=ack.status,
                body=ack.body,
            )
            for position, ack in enumerate(document.acknowledgments)
        ],
        ignore_conflicts=True,
    )
    if document.acknowledgments:
        acknowledgments_publish(inbound_id=message.pk)


def _mark_dead(message: InboundMessage, reason: str) -> None:
    message.status = InboundMessage.Status.DEAD
    message.error = reason[:5000]
    message.processed_at = timezone.now()
    message.save(update_fields=["status", "error", "attempts", "processed_at", "format", "partner", "channel"])


# --- preview, replay, sweep -------------------------------------------------------------------


@dataclass
class Preview:
    """What a document would become, without storing or applying anything (``ingest --dry-run``)."""

    format: str | None
    partner: str | None
    document: ParsedDocument | None = None
    error: str = ""


def message_preview(
    *,
    body: bytes,
    format: str = "auto",
    partner: Partner | None = None,
    channel: Channel | None = None,
    received_at: datetime | None = None,
) -> Preview:
    """Parse without storing or applying; with the channel and time a stored message came with, its
    events are the ones processing made."""
    try:
        fmt = _resolve_format(format, channel or _only_channel(partner), body)
        sender = partner or _identify_sender(fmt, body)
    except PermanentFailure as exc:
        return Preview(format=None if format == "auto" else format, partner=partner and partner.code, error=str(exc))
    context = _context(sender, channel or _default_channel(sender, fmt), received_at)
    try:
        return Preview(format=fmt, partner=sender.code, document=_parse(fmt, body, context))
    except PermanentFailure as exc:
        return Preview(format=fmt, partner=sender.code, error=str(exc))


def messages_replay(message_ids: Iterable[int]) -> int:
    """Put dead letters (and partially processed messages) back in the queue; returns how many."""
    ids = list(
        InboundMessage.objects.filter(pk__in=list(message_ids), status__in=REPLAYABLE).values_list("pk", flat=True)
    )
    InboundMessage.objects.filter(pk__in=ids).update(status=InboundMessage.Status.RECEIVED, error="")
    transaction.on_commit(
        lambda: enqueue_processing(InboundMessage.objects.filter(pk__in=ids).select_related("channel"))
    )
    return len(ids)


def messages_requeue_stuck(*, older_than: timedelta = STUCK_AFTER) -> int:
    """Re-enqueue messages still ``received`` long after arrival (a lost task, a broker restart)."""
    stuck = list(
        InboundMessage.objects.filter(
            status=InboundMessage.Status.RECEIVED, received_at__lt=timezone.now() - older_than
        ).select_related("channel")[:5000]
    )
    enqueue_processing(stuck)
    return len(stuck)


# --- inbox folders ----------------------------------------------------------------------------


def inbox_poll(root: Path | None = None) -> int:
    """Store every file in ``<root>/<partner>/<channel>/`` and move it to the channel's archive."""
    root = Path(root or settings.INBOX_DIR)
    if not root.is_dir():
        return 0
    channels = {
        (c.partner.code, c.code): c
        for c in Channel.objects.filter(active=True, direction=Channel.Direction.INBOUND).select_related("partner")
    }
    stored = 0
    for (partner_code, channel_code), channel in channels.items():
        folder = root / partner_code / channel_code
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            stored += _take_file(path, channel)
    return stored


def _take_file(path: Path, channel: Channel) -> int:
    archive = path.parent / "archive" / timezone.now().strftime("%Y-%m-%d")
    try:
        with transaction.atomic():
            _, created = message_receive(
                body=path.read_bytes(),
                source=InboundMessage.Source.FILE,
                partner=channel.partner,
                channel=channel,
                filename=path.name,
            )
    except MessageRejected as exc:
        logger.warning("inbox file %s refused: %s", path, exc)
        archive = path.parent / "rejected"
        created = False
    archive.mkdir(parents=True, exist_ok=True)
    shutil.move(path, archive / path.name)
    return int(created)
