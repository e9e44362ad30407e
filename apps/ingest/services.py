"""The ingest pipeline, top to bottom: receive (store raw) → process (parse, apply, acknowledge).

Receiving stores the exact bytes in the transaction that acknowledges them and never parses.
Processing runs in a worker: it finds the format and the sending partner, parses into canonical
events, applies them through ``apply_events`` and stores the acknowledgments, all in one
transaction, so a worker killed half way leaves the message ``received`` for the next attempt.
"""

import hashlib
import logging
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.dashboards.services import kpis_refresh_later
from apps.ingest.batching import batcher_for
from apps.ingest.models import InboundMessage, OutboundMessage
from apps.ingest.parsers import ParseContext, ParsedDocument, ParseError, detect_format, get_parser, sender_ids
from apps.ingest.parsers.base import Acknowledgment, finished
from apps.ingest.parsers.csv_feed import channel_matching
from apps.ingest.parsers.csv_feed import looks_like as looks_like_csv
from apps.ingest.webhooks import SignatureRejected, Verified, WebhookRefused, inbound_channel, verify_webhook
from apps.outbound.services import acknowledgments_publish
from apps.partners.models import Channel, EdiIdentifier, Partner
from apps.partners.scopes import sender_scopes
from apps.timeline import reactions
from apps.timeline.events import CanonicalEvent, EventKey, EventKind, EventSource
from apps.timeline.services import ApplyResult
from apps.timeline.services import apply_events as apply_timeline_events
from apps.timeline.stages import timed

logger = logging.getLogger(__name__)

APPLY_BATCH_SIZE = 2000
APPLY_BATCH_LINES = 10_000
# Messages up to this size are processed together, up to MICRO_BATCH_MESSAGES at a time.
MICRO_BATCH_MAX_BYTES = 64 * 1024
MICRO_BATCH_MESSAGES = 200
STUCK_AFTER = timedelta(minutes=10)
DOCUMENT_FORMATS = ("x12", "edifact", "csv", "json")
# The kind of the OutboundMessage an acknowledgment becomes, by its format.
ACKNOWLEDGMENT_KINDS = {"x12": "997", "edifact": "CONTRL"}
REPLAYABLE = (InboundMessage.Status.DEAD, InboundMessage.Status.FAILED, InboundMessage.Status.PARTIALLY_PROCESSED)


class MessageRejected(ValueError):
    """A payload refused at the door (empty, too large); nothing was stored."""


class PermanentFailure(Exception):
    """Processing can never succeed as things stand: the message becomes a dead letter (with
    the ``acknowledgments`` its parser wrote all the same, such as a CONTRL rejection)."""

    def __init__(self, *args: object, acknowledgments: Iterable[Acknowledgment] = ()) -> None:
        super().__init__(*args)
        self.acknowledgments = list(acknowledgments)


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
    scopes: list[str] | None = None,
) -> tuple[InboundMessage, bool]:
    """Store a payload; return it and whether it is new.

    The same payload again (same idempotency key, or same partner and body) returns the original
    message and changes nothing. A new message is queued for processing once the transaction
    commits, unless ``enqueue`` is False; ``priority`` names its queue when the receiver already
    knows what the message holds (a channel with its own priority still decides). ``scopes`` is
    what the sender's token allowed; the channel's, or the partner kind's, apply besides.
    """
    if not body:
        raise MessageRejected("the message is empty")
    if len(body) > settings.INGEST_MAX_MESSAGE_BYTES:
        raise MessageRejected(
            f"the message is {len(body):,} bytes; the limit is {settings.INGEST_MAX_MESSAGE_BYTES:,} bytes"
        )
    digest = hashlib.sha256(body).hexdigest()
    # A known sender's resends are caught by the unique indexes: a new message costs one INSERT.
    # An unknown sender's idempotency key is not unique in the database: look first.
    existing = _existing_message(partner, idempotency_key, digest) if partner is None else None
    if existing:
        return _resent(existing), False
    try:
        with _savepoint():
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
                queue=processing_queue(channel, priority),
                scopes=message_scopes(partner, channel, scopes),
            )
    except IntegrityError:
        existing = _existing_message(partner, idempotency_key, digest)
        if existing is None:
            raise
        return _resent(existing), False
    if enqueue:
        transaction.on_commit(lambda: enqueue_soon(message))
    return message, True


def _savepoint() -> AbstractContextManager:
    """A savepoint when inside a transaction, so a duplicate does not break it; none otherwise
    (the INSERT alone is atomic and needs no BEGIN and COMMIT round trips)."""
    return transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext()


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


def enqueue_processing(messages: Iterable[InboundMessage]) -> None:
    """One task per queue for each ``MICRO_BATCH_MESSAGES`` messages (a task takes its messages and
    their waiting companions together)."""
    from apps.ingest.tasks import process_message_task

    by_queue: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        by_queue[message.queue].append(message.pk)
    for queue, ids in by_queue.items():
        for start in range(0, len(ids), MICRO_BATCH_MESSAGES):
            first, *more = ids[start : start + MICRO_BATCH_MESSAGES]
            process_message_task.apply_async(args=[first, more] if more else [first], queue=queue)


def enqueue_soon(message: InboundMessage) -> None:
    """Queue a stored message: at once when tasks run in-process (tests, the demo), else with the
    others this process stores within ``ENQUEUE_BATCH_SECONDS`` (``apps.ingest.batching``)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or settings.ENQUEUE_BATCH_SECONDS <= 0:
        enqueue_processing([message])
    else:
        _stored.add([message])


_stored = batcher_for(lambda messages: enqueue_processing(messages), lambda: settings.ENQUEUE_BATCH_SECONDS)


def message_scopes(
    partner: Partner | None, channel: Channel | None, token_scopes: list[str] | None = None
) -> list[str] | None:
    """What a message may hold: all its grants allow (token, channel), else its partner kind's
    defaults; None while the sender is unknown (an EDI file identifies it later)."""
    if partner is None:
        return None
    grants = [token_scopes] if token_scopes is not None else []
    if channel is not None:
        grants.append(channel.scopes)
    return sender_scopes(partner.kind, *grants)


def processing_queue(channel: Channel | None, priority: str | None = None) -> str:
    """The channel's priority decides, else what the receiver saw in the message (a delivery
    among canonical events is critical, a batch of scans is bulk), else the default queue."""
    if channel and channel.priority != Channel.Priority.DEFAULT:
        return channel.priority
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


def message_process(message_id: int, *, keep_events: bool = False, companions: int = 0) -> Outcome | None:
    """Parse and apply one received message. Returns None when it is not waiting (done already,
    or another worker holds it): a redelivered task is harmless.

    With ``companions``, a small message takes up to that many other small messages waiting on
    its queue along (micro-batching): a thousand single-event webhooks are applied, and reacted
    to, in a few units of work instead of a thousand. Their own tasks find them done.

    Locking: the message rows are locked (skip locked) for the whole transaction, so two workers
    never process the same message, and a worker that dies leaves them ``received``.
    """
    with transaction.atomic():
        message = _claim(InboundMessage.objects.filter(pk=message_id)).first()
        if message is None:
            return None
        together = [message]
        if companions and message.size <= MICRO_BATCH_MAX_BYTES:
            together += _claim_companions(message, companions)
        kpis_refresh_later(message_ids=[m.pk for m in together])
        with reactions.collecting():
            if len(together) > 1:
                return _process_together(together)
            return _process_alone(message, keep_events=keep_events)


def _claim(messages: QuerySet[InboundMessage]) -> QuerySet[InboundMessage]:
    return (
        messages.select_for_update(skip_locked=True, of=("self",))
        .select_related("partner", "channel__customer")
        .prefetch_related("partner__channels")
        .filter(status=InboundMessage.Status.RECEIVED)
    )


def _claim_companions(message: InboundMessage, limit: int) -> list[InboundMessage]:
    waiting = InboundMessage.objects.filter(queue=message.queue, size__lte=MICRO_BATCH_MAX_BYTES).exclude(pk=message.pk)
    return list(_claim(waiting).order_by("pk")[:limit])


def message_fail(message_id: int, reason: str, *, status: str = InboundMessage.Status.FAILED) -> None:
    """Retries are exhausted (or processing ran out of time, ``status`` dead): keep the message as
    a dead letter with the reason. Only a message still waiting changes."""
    failed = InboundMessage.objects.filter(pk=message_id, status=InboundMessage.Status.RECEIVED).update(
        status=status, error=reason[:5000], processed_at=timezone.now()
    )
    if failed:
        kpis_refresh_later(message_ids=[message_id])


def message_time_out(message_id: int, seconds: int) -> None:
    """Processing hit its time limit and was stopped (everything it did rolled back): the message
    becomes a dead letter, never retried by itself, replayable once the cause is fixed."""
    message_fail(
        message_id,
        f"processing exceeded {seconds} seconds and was stopped; replay the message once the cause is fixed",
        status=InboundMessage.Status.DEAD,
    )


@dataclass
class _Tally:
    """What a message's events became, added up over the apply batches."""

    count: int = 0
    unmapped: int = 0
    source_time: datetime | None = None
    applied: int = 0
    duplicates: int = 0
    parked: int = 0
    rejected: dict[EventKey, str] = field(default_factory=dict)

    def read(self, events: list[CanonicalEvent]) -> None:
        self.count += len(events)
        self.unmapped += sum(event.kind == EventKind.SHIPMENT_STATUS_UNMAPPED for event in events)
        latest = max(event.occurred_at for event in events)
        self.source_time = max(self.source_time, latest) if self.source_time else latest


def _process_alone(message: InboundMessage, *, keep_events: bool) -> Outcome:
    message.attempts += 1
    try:
        document, parsed = _open(message)
        outcome, tally = Outcome(message=message), _Tally()
        with transaction.atomic():  # a message holding one event out of scope is refused whole
            for batch in _batches(parsed, APPLY_BATCH_SIZE):
                result = apply_timeline_events(batch)
                _refuse_out_of_scope(result, batch)
                tally.read(batch)
                tally.applied += len(result.applied)
                tally.duplicates += len(result.duplicates)
                tally.parked += len(result.parked)
                tally.rejected.update(result.rejected)
                if keep_events:
                    outcome.events += batch
    except PermanentFailure as exc:
        _mark_dead(message, str(exc), exc.acknowledgments)
        return Outcome(message=message)
    _finish(message, document, tally)
    outcome.applied, outcome.duplicates, outcome.parked = tally.applied, tally.duplicates, tally.parked
    return outcome


def _process_together(messages: list[InboundMessage]) -> Outcome:
    """Small messages applied as one: one apply per batch of events, one round of reactions.

    A message that cannot be read becomes a dead letter alone; each of the others gets the
    figures of its own events (an event several of them carry counts for the first).
    """
    opened: list[tuple[InboundMessage, ParsedDocument, list[CanonicalEvent]]] = []
    for message in messages:
        message.attempts += 1
        try:  # reading writes nothing: no savepoint is needed to drop a message that fails here
            document, parsed = _open(message)
            opened.append((message, document, list(parsed)))
        except PermanentFailure as exc:
            _mark_dead(message, str(exc), exc.acknowledgments)
    owner: dict[EventKey, int] = {}
    for message, _, events in opened:
        for event in events:
            owner.setdefault(event.key, message.pk)
    fate: dict[EventKey, str] = {}
    rejected: dict[EventKey, str] = {}
    try:
        with transaction.atomic():
            for batch in _batches((event for _, _, events in opened for event in events), APPLY_BATCH_SIZE):
                result = apply_timeline_events(batch)
                _refuse_out_of_scope(result, batch)
                fate.update(dict.fromkeys(result.parked, "parked"))
                fate.update(dict.fromkeys(result.applied, "applied"))
                rejected.update(result.rejected)
    except OutOfScope as exc:
        return _without_refused(opened, exc.reasons, owner)
    for message, document, events in opened:
        tally = _Tally(rejected={e.key: rejected[e.key] for e in events if e.key in rejected})
        if events:
            tally.read(events)
        mine = [fate.get(key) for key in {e.key for e in events if owner[e.key] == message.pk}]
        tally.applied, tally.parked = mine.count("applied"), mine.count("parked")
        tally.duplicates = tally.count - tally.applied - tally.parked - len(tally.rejected)
        _finish(message, document, tally)
    return Outcome(message=messages[0])


class OutOfScope(PermanentFailure):
    """Events the sender may not send: the whole message is refused, nothing of it applied."""

    def __init__(self, reasons: dict[EventKey, str]) -> None:
        self.reasons = reasons
        shown = "; ".join(f"{key.event_id}: {reason}" for key, reason in list(reasons.items())[:20])
        more = f" (and {len(reasons) - 20} more)" if len(reasons) > 20 else ""
        super().__init__(f"refused: {len(reasons)} event(s) out of the sender's scope: {shown}{more}")


def _refuse_out_of_scope(result: ApplyResult, events: list[CanonicalEvent]) -> None:
    """Raise for this message's own refused events; those of parked events from earlier messages
    that came back now are only logged, their message was processed long ago."""
    ours = {event.key for event in events}
    reasons = {key: reason for key, reason in result.refused.items() if key in ours}
    for key in result.refused.keys() - reasons.keys():
        logger.warning("parked event %s refused when its subject appeared: %s", key, result.refused[key])
    if reasons:
        raise OutOfScope(reasons)


def _without_refused(
    opened: list[tuple[InboundMessage, ParsedDocument, list[CanonicalEvent]]],
    reasons: dict[EventKey, str],
    owner: dict[EventKey, int],
) -> Outcome:
    """Nothing of the micro-batch was applied: refuse the messages holding events out of scope,
    then apply the others together again."""
    refused = {owner[key] for key in reasons}
    for message, _, events in opened:
        if message.pk in refused:
            own = {event.key: reasons[event.key] for event in events if event.key in reasons}
            _mark_dead(message, str(OutOfScope(own)))
    others = [message for message, _, _ in opened if message.pk not in refused]
    for message in others:
        message.attempts -= 1  # counted again when they are opened again
    return _process_together(others) if others else Outcome(message=opened[0][0])


def _open(message: InboundMessage) -> tuple[ParsedDocument, Iterable[CanonicalEvent]]:
    """The document and its events, with their source. What is learnt on the way (format,
    sender, channel) is kept on the message even when a later step fails."""
    body = bytes(message.body)
    message.format = fmt = _format_of(message, body)
    message.partner = partner = message.partner or _identify_sender(fmt, body)
    message.channel = channel = message.channel or _channel_for(partner, fmt, body)
    message.mapping_version = channel.mapping_version if channel else None
    if not partner.active:
        raise PermanentFailure(f"partner {partner.code} is inactive: its messages are not processed")
    if message.scopes is None:
        message.scopes = message_scopes(partner, channel)
    document, parsed = _parse_stream(fmt, body, _context(partner, channel, message.received_at))
    source = EventSource(
        partner=partner.code, channel=channel.code if channel else None, message=message.pk, scopes=message.scopes
    )
    return document, (finished(event, source=source) for event in parsed)


def _finish(message: InboundMessage, document: ParsedDocument, tally: _Tally) -> None:
    _store_acknowledgments(message, message.partner, message.channel, document)
    rejected = tally.rejected
    rejections = [f"{key.event_id}: {why}" for key, why in rejected.items()]
    message.warnings = [*document.warnings, *document.unsupported, *rejections]
    message.unmapped_codes = sorted(set(document.unmapped_codes))
    message.events_count, message.unmapped_count, message.source_time = tally.count, tally.unmapped, tally.source_time
    message.applied_count, message.duplicate_count = tally.applied, tally.duplicates
    message.parked_count = tally.parked
    partial = bool(document.unsupported or rejected)
    message.status = InboundMessage.Status.PARTIALLY_PROCESSED if partial else InboundMessage.Status.PROCESSED
    message.error = ""
    message.processed_at = timezone.now()
    message.save()


def _format_of(message: InboundMessage, body: bytes) -> str:
    given = message.channel
    return _resolve_format(message.format, given or _only_channel(message.partner), body, message.partner, given)


def _resolve_format(
    named: str, channel: Channel | None, body: bytes, partner: Partner | None = None, given: Channel | None = None
) -> str:
    """The format named with the message, else its channel's, else what the bytes look like: CSV
    when its header row matches a CSV channel of the partner (``given``, the channel the message
    came with, when there is one)."""
    if named and named != "auto":
        return named
    if channel and channel.format in DOCUMENT_FORMATS:
        return channel.format
    adapter = (channel.mapping_overrides or {}).get("adapter") if channel else None
    fmt = adapter or detect_format(body)
    if fmt is None and looks_like_csv(body):
        candidates = _csv_channels(partner, given)
        if candidates:
            _csv_channel(partner, candidates, body, prefix="could not tell the format: ")
            return "csv"
    if fmt is None:
        raise PermanentFailure(
            "could not tell the format: not X12, EDIFACT, canonical JSON, a known aggregator's JSON or CSV "
            "matching one of the partner's CSV channels; send it with an explicit format"
        )
    return fmt


def _csv_channels(partner: Partner | None, given: Channel | None = None) -> list[Channel]:
    """The channels a CSV file may be read by: the one it came with when it has a CSV mapping,
    else the partner's active inbound CSV channels."""
    if given is not None:
        return [given] if given.format == Channel.Format.CSV or "csv" in (given.mapping_overrides or {}) else []
    if partner is None:
        return []
    return [
        c
        for c in partner.channels.all()
        if c.active and c.direction == Channel.Direction.INBOUND and c.format == Channel.Format.CSV
    ]


def _csv_channel(partner: Partner | None, channels: list[Channel], body: bytes, prefix: str = "") -> Channel:
    """The channel whose column mapping the file's header row matches (the most specific)."""
    by_code = {channel.code: channel for channel in channels}
    mappings = {code: channel.mapping_overrides or {} for code, channel in by_code.items()}
    try:
        return by_code[channel_matching(body, mappings, partner=partner.code if partner else None)]
    except ParseError as exc:
        raise PermanentFailure(f"{prefix}{exc}") from exc


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


def _channel_for(partner: Partner, fmt: str, body: bytes) -> Channel | None:
    """The channel of a message that came without one: for CSV, among several CSV channels, the
    one whose columns the header row matches."""
    if fmt == "csv":
        candidates = _csv_channels(partner)
        if len(candidates) > 1:
            return _csv_channel(partner, candidates, body)
    return _default_channel(partner, fmt)


def _context(partner: Partner, channel: Channel | None, received_at: datetime | None = None) -> ParseContext:
    return ParseContext(
        partner=partner.code,
        channel=channel.code if channel else None,
        mapping=(channel.mapping_overrides if channel else None) or {},
        customer=channel.customer.code if channel and channel.customer_id else None,
        time_zone=partner.time_zone,
        received_at=received_at,
    )


def _parse_stream(fmt: str, body: bytes, context: ParseContext) -> tuple[ParsedDocument, Iterable[CanonicalEvent]]:
    """The document and its events; a parser that can stream (large CSV files) yields them one by
    one, so a 100,000-row file is applied batch by batch in flat memory."""
    try:
        parser = get_parser(fmt)
    except ParseError as exc:  # a format stored by an older version, or set by hand
        raise PermanentFailure(str(exc)) from exc
    stream = getattr(parser, "iter_parse", None)
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
    except SoftTimeLimitExceeded:
        raise
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
        raise PermanentFailure(str(exc), acknowledgments=exc.acknowledgments) from exc
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        # A parser bug must not retry forever nor lose the message: it waits as a dead letter.
        logger.exception("parser %s failed on a message from %s", fmt, context.partner)
        raise PermanentFailure(f"internal error in the {fmt} parser: {exc!r}") from exc


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
                kind=ACKNOWLEDGMENT_KINDS.get(ack.format, "ack"),
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


def _mark_dead(message: InboundMessage, reason: str, acknowledgments: Sequence[Acknowledgment] = ()) -> None:
    message.status = InboundMessage.Status.DEAD
    message.error = reason[:5000]
    message.processed_at = timezone.now()
    message.save(
        update_fields=["status", "error", "attempts", "processed_at", "format", "partner", "channel", "mapping_version"]
    )
    if acknowledgments and message.partner_id:
        document = ParsedDocument(acknowledgments=[*acknowledgments])
        _store_acknowledgments(message, message.partner, message.channel, document)


# --- preview, replay, sweep -------------------------------------------------------------------


@dataclass
class Preview:
    """What a document would become, without storing or applying anything (``ingest --dry-run``)."""

    format: str | None
    partner: str | None
    document: ParsedDocument | None = None
    error: str = ""
    channel: str | None = None  # the channel whose mapping it was read with, and that mapping's version
    mapping_version: int | None = None


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
        fmt = _resolve_format(format, channel or _only_channel(partner), body, partner, channel)
        sender = partner or _identify_sender(fmt, body)
        channel = channel or _channel_for(sender, fmt, body)
        context = _context(sender, channel, received_at)
    except PermanentFailure as exc:
        return Preview(format=None if format == "auto" else format, partner=partner and partner.code, error=str(exc))
    read_with = {"channel": channel.code, "mapping_version": channel.mapping_version} if channel else {}
    try:
        return Preview(format=fmt, partner=sender.code, document=_parse(fmt, body, context), **read_with)
    except PermanentFailure as exc:
        return Preview(format=fmt, partner=sender.code, error=str(exc), **read_with)


def messages_replay(message_ids: Iterable[int]) -> int:
    """Put dead letters (and partially processed messages) back in the queue; returns how many."""
    ids = list(
        InboundMessage.objects.filter(pk__in=list(message_ids), status__in=REPLAYABLE).values_list("pk", flat=True)
    )
    InboundMessage.objects.filter(pk__in=ids).update(status=InboundMessage.Status.RECEIVED, error="")
    transaction.on_commit(lambda: enqueue_processing(InboundMessage.objects.filter(pk__in=ids).only("pk", "queue")))
    return len(ids)


def messages_requeue_stuck(*, older_than: timedelta = STUCK_AFTER) -> int:
    """Re-enqueue messages still ``received`` long after arrival (a lost task, a broker restart)."""
    stuck = list(
        InboundMessage.objects.filter(
            status=InboundMessage.Status.RECEIVED, received_at__lt=timezone.now() - older_than
        ).only("pk", "queue")[:5000]
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


# --- signed webhooks -------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """What a webhook receiver needs of the HTTP request, whichever server path it came by."""

    partner: str
    channel: str
    body: bytes
    declared_size: int
    timestamp: str
    signature: str
    idempotency_key: str | None
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)  # every header, names in lower case


def webhook_receive(hook: WebhookRequest, status_url: Callable[[int], str]) -> tuple[int, dict]:
    """Verify, store and queue one signed webhook: the HTTP status and the JSON answer.
    202 means stored (processing comes later); a resend answers 200 with the original message."""
    target = inbound_channel(hook.partner, hook.channel)
    if target is None:
        return 404, {"detail": f"No active inbound channel {hook.partner}/{hook.channel}."}
    if hook.declared_size > settings.INGEST_MAX_MESSAGE_BYTES:
        return 413, {"detail": f"The body is {hook.declared_size:,} bytes; the limit is exceeded."}
    try:
        verified = _verified(target, hook)
    except SignatureRejected as exc:
        return 401, {"detail": str(exc)}
    except WebhookRefused as exc:
        return 422, {"detail": str(exc)}
    if verified is None:
        return 404, {"detail": f"No active inbound channel {hook.partner}/{hook.channel}."}
    target, seen = verified
    try:
        message, created = message_receive(
            body=hook.body,
            source=InboundMessage.Source.WEBHOOK,
            partner=target.partner,
            channel=target,
            format=seen.format,
            idempotency_key=seen.delivery_id or hook.idempotency_key,
            content_type=hook.content_type,
        )
    except MessageRejected as exc:
        return 400, {"detail": str(exc)}
    answer = {
        "id": message.pk,
        "status": message.status,
        "status_url": status_url(message.pk),
        "duplicate": not created,
    }
    return (202 if created else 200), answer


def _verified(channel: Channel, hook: WebhookRequest) -> tuple[Channel, Verified] | None:
    """The channel whose secret signed ``hook``, with what its signature scheme says of it: the kept
    channel, else a fresh copy (the secret or the scheme may have changed since this process looked
    it up; None if the channel is gone meanwhile)."""
    try:
        return channel, _verify(channel, hook)
    except SignatureRejected:
        fresh = inbound_channel(hook.partner, hook.channel, fresh=True)
        if fresh is None:
            return None
        return fresh, _verify(fresh, hook)


def _verify(channel: Channel, hook: WebhookRequest) -> Verified:
    return verify_webhook(
        channel=channel, body=hook.body, timestamp=hook.timestamp, signature=hook.signature, headers=hook.headers
    )
