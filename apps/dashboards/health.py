"""Integration health per partner and channel, computed live from the inbound messages.

A fixed number of grouped queries whatever the number of partners, channels or messages: the
last 24 hours aggregated per (partner, channel), dead letters and missing 997s counted the same
way, and the last message per channel.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import (
    Avg,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce

from apps.ingest.models import InboundMessage, OutboundMessage
from apps.partners.models import Channel, Partner
from controltower.compound import rows_of_slices

WINDOW = timedelta(hours=24)
DEAD = (InboundMessage.Status.DEAD, InboundMessage.Status.FAILED)
DONE = (InboundMessage.Status.PROCESSED, InboundMessage.Status.PARTIALLY_PROCESSED)
NONE = "-"  # the filter value for "no partner" (unknown sender) or "no channel"

Key = tuple[int | None, int | None]


@dataclass
class ChannelHealth:
    """One partner's channel (or its messages that came without a channel) over the window."""

    partner: Partner | None
    channel: Channel | None
    last_message_at: datetime | None = None
    messages: int = 0
    failed: int = 0
    lag: timedelta | None = None
    dead_letters: int = 0
    duplicates: int = 0
    unmapped: int = 0
    unmapped_codes: list[str] = field(default_factory=list)
    missing_acks: int = 0
    quiet: bool = False

    @property
    def per_hour(self) -> float:
        return self.messages / (WINDOW.total_seconds() / 3600)

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.messages if self.messages else None

    @property
    def failure_percent(self) -> float | None:
        rate = self.failure_rate
        return None if rate is None else rate * 100

    @property
    def lag_text(self) -> str:
        return duration_text(self.lag) if self.lag is not None else "—"

    @property
    def cadence_text(self) -> str:
        cadence = self.channel.expected_cadence if self.channel else None
        return duration_text(cadence) if cadence else ""

    @property
    def problems(self) -> list[str]:
        found = [("quiet", self.quiet), ("failing", self.failed > 0), ("dead letters", self.dead_letters > 0)]
        return [name for name, present in found if present]

    @property
    def partner_filter(self) -> str:
        return self.partner.code if self.partner else NONE

    @property
    def channel_filter(self) -> str:
        return str(self.channel.pk) if self.channel else NONE


def duration_text(value: timedelta) -> str:
    """A duration as people say it: "0.4 s", "12 s", "3 min", "2 h 5 min", "1 d 3 h"."""
    seconds = max(value.total_seconds(), 0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _grouped(messages: QuerySet[InboundMessage]) -> QuerySet[InboundMessage]:
    return messages.order_by().values("partner_id", "channel_id")


def _key(row: dict) -> Key:
    return row["partner_id"], row["channel_id"]


def integration_health(*, now: datetime) -> list[ChannelHealth]:
    """A row per active inbound channel, plus one per partner for messages without a channel;
    rows with a problem (quiet, failing, dead letters) first."""
    since = now - WINDOW
    rows = _rows(now)
    window = _grouped(InboundMessage.objects.filter(received_at__gt=since, received_at__lte=now))
    lag = ExpressionWrapper(F("processed_at") - F("received_at"), output_field=DurationField())
    for stats in window.annotate(
        messages=Count("id"),
        failed=Count("id", filter=Q(status__in=DEAD)),
        lag=Avg(lag, filter=Q(processed_at__isnull=False)),
        duplicates=Coalesce(Sum("resent_count"), 0) + Coalesce(Sum("duplicate_count"), 0),
        unmapped=Coalesce(Sum("unmapped_count"), 0),
    ):
        if row := rows.get(_key(stats)):
            row.messages, row.failed, row.lag = stats["messages"], stats["failed"], stats["lag"]
            row.duplicates, row.unmapped = stats["duplicates"], stats["unmapped"]

    codes = window.filter(unmapped_count__gt=0).values_list("partner_id", "channel_id", "unmapped_codes").distinct()
    for partner_id, channel_id, found in codes:
        if row := rows.get((partner_id, channel_id)):
            row.unmapped_codes = sorted(set(row.unmapped_codes) | set(found or []))

    for stats in _grouped(InboundMessage.objects.filter(status__in=DEAD)).annotate(count=Count("id")):
        if row := rows.get(_key(stats)):
            row.dead_letters = stats["count"]

    acknowledged = OutboundMessage.objects.filter(inbound=OuterRef("pk"), kind="997")
    unacknowledged = InboundMessage.objects.filter(
        format="x12", status__in=DONE, processed_at__gt=since, processed_at__lte=now
    ).exclude(Exists(acknowledged))
    for stats in _grouped(unacknowledged).annotate(count=Count("id")):
        if row := rows.get(_key(stats)):
            row.missing_acks = stats["count"]

    for row in rows.values():
        cadence = row.channel.expected_cadence if row.channel else None
        row.quiet = bool(cadence) and (row.last_message_at is None or now - row.last_message_at > cadence)
    return sorted(rows.values(), key=_order)


def _rows(now: datetime) -> dict[Key, ChannelHealth]:
    """Empty rows with their last message: active inbound channels of active partners, then, per
    partner that sent messages without a channel (or unknown senders), one row for those."""
    last_of_channel = (
        InboundMessage.objects.filter(channel=OuterRef("pk"), received_at__lte=now)
        .order_by()
        .values("channel")
        .annotate(last=Max("received_at"))
        .values("last")
    )
    channels = list(
        Channel.objects.filter(active=True, direction=Channel.Direction.INBOUND, partner__active=True)
        .select_related("partner")
        .annotate(last_message_at=last_of_channel)
    )
    rows: dict[Key, ChannelHealth] = {
        (c.partner_id, c.pk): ChannelHealth(partner=c.partner, channel=c, last_message_at=c.last_message_at)
        for c in channels
    }
    without_channel = _grouped(InboundMessage.objects.filter(channel__isnull=True, received_at__lte=now))
    last_without_channel = {row["partner_id"]: row["last"] for row in without_channel.annotate(last=Max("received_at"))}
    partners = {c.partner_id: c.partner for c in channels}
    missing = [pk for pk in last_without_channel if pk is not None and pk not in partners]
    partners |= Partner.objects.filter(active=True).in_bulk(missing)
    for partner_id, last in last_without_channel.items():
        if partner_id is None or partner_id in partners:
            rows[(partner_id, None)] = ChannelHealth(
                partner=partners.get(partner_id), channel=None, last_message_at=last
            )
    return rows


def _order(row: ChannelHealth) -> tuple:
    return (
        not row.problems,
        -len(row.problems),
        row.partner.code if row.partner else "",
        row.channel.code if row.channel else "",
    )


def dead_letters(*, partner: str = "", channel: str = "") -> QuerySet[InboundMessage]:
    """Dead and failed messages, newest first, without their bodies.

    ``partner`` is a partner code, or NONE for unknown senders; ``channel`` a channel id, or NONE
    for messages that came without one; empty means any.
    """
    messages = InboundMessage.objects.filter(status__in=DEAD)
    if partner == NONE:
        messages = messages.filter(partner__isnull=True)
    elif partner:
        messages = messages.filter(partner__code=partner)
    if channel == NONE:
        messages = messages.filter(channel__isnull=True)
    elif channel:
        messages = messages.filter(channel_id=int(channel))
    return messages.select_related("partner", "channel").defer("body").order_by("-received_at", "-id")


# The first page after sign-in: feeds in trouble, read with these limits.
DEAD_LETTERS_READ = 200
CHANNELS_READ = 200


@dataclass(frozen=True)
class FeedTrouble:
    """One partner's feed that needs a look: quiet past its cadence, or dead letters lately."""

    partner_name: str
    partner_code: str
    channel_name: str
    channel_id: int | None
    quiet_since: datetime | None = None
    cadence: timedelta | None = None
    dead_letters: int = 0
    dead_letters_capped: bool = False
    last_dead_letter_at: datetime | None = None


def feeds_in_trouble(now: datetime) -> list[FeedTrouble]:
    """Feeds quiet past their expected cadence and feeds with dead letters in the health window.

    Two queries: the active inbound channels that expect a cadence (at most ``CHANNELS_READ``),
    each with its last message read from the top of its (channel, received_at) index; and the
    newest ``DEAD_LETTERS_READ`` dead or failed messages of the window, each status read from the
    top of the (status, received_at) index.
    """
    last_message = (
        InboundMessage.objects.filter(channel=OuterRef("pk")).order_by("-received_at").values("received_at")[:1]
    )
    channels = (
        Channel.objects.filter(
            active=True,
            direction=Channel.Direction.INBOUND,
            partner__active=True,
            expected_cadence__isnull=False,
        )
        .select_related("partner")
        .annotate(last_message_at=Subquery(last_message))
        .order_by("partner__code", "code")[:CHANNELS_READ]
    )
    troubles: dict[tuple[int | None, int | None], FeedTrouble] = {}
    for channel in channels:
        if channel.last_message_at is None or now - channel.last_message_at > channel.expected_cadence:
            troubles[(channel.partner_id, channel.pk)] = FeedTrouble(
                partner_name=channel.partner.name,
                partner_code=channel.partner.code,
                channel_name=channel.name or channel.code,
                channel_id=channel.pk,
                quiet_since=channel.last_message_at,
                cadence=channel.expected_cadence,
            )

    since = now - WINDOW
    newest = [
        InboundMessage.objects.filter(status=status, received_at__gt=since)
        .order_by("-received_at")
        .values_list("partner_id", "partner__name", "partner__code", "channel_id", "channel__name", "received_at")[
            :DEAD_LETTERS_READ
        ]
        for status in (InboundMessage.Status.DEAD, InboundMessage.Status.FAILED)
    ]
    dead: dict[tuple[int | None, int | None], list] = {}
    for partner_id, partner_name, partner_code, channel_id, channel_name, received_at in rows_of_slices(newest):
        dead.setdefault((partner_id, channel_id), []).append((partner_name, partner_code, channel_name, received_at))
    capped = sum(len(rows) for rows in dead.values()) >= DEAD_LETTERS_READ
    for key, rows in dead.items():
        partner_name, partner_code, channel_name, _ = rows[0]
        base = troubles.get(key) or FeedTrouble(
            partner_name=partner_name or "Unknown sender",
            partner_code=partner_code or "-",
            channel_name=channel_name or "no channel",
            channel_id=key[1],
        )
        troubles[key] = FeedTrouble(
            **{
                **base.__dict__,
                "dead_letters": len(rows),
                "dead_letters_capped": capped,
                "last_dead_letter_at": max(row[3] for row in rows),
            }
        )
    return sorted(troubles.values(), key=lambda t: (-t.dead_letters, t.partner_name, t.channel_name))
