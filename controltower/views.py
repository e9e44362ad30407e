import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.dashboards.health import WINDOW as HEALTH_WINDOW
from apps.exceptions.models import ExceptionCase, Queue
from apps.exceptions.roles import queues_of
from apps.exceptions.selectors import MINE, NAV_COUNT_LIMIT, amounts_hidden_for, oldest_open_cases, open_counts
from apps.exceptions.views import WORK, permitted_cases
from apps.ingest.models import InboundMessage
from apps.partners.models import Channel
from apps.timeline.models import Order, OrderStage
from apps.timeline.selectors import late_condition

logger = logging.getLogger(__name__)

# What the first page after sign-in reads: every part is a LIMIT over an index, whatever the data.
OLDEST_PER_QUEUE = 3
LATE_ORDERS_SHOWN = 8
# Orders late against a promise made more than this long ago are not "now" any more (the
# customer-service queue holds them); the window bounds the index range read.
LATE_WINDOW = timedelta(days=30)
DEAD_LETTERS_READ = 200
CHANNELS_READ = 200


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers and the database takes a query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any database failure means not healthy
        # The reason (host names, DSN, driver text) goes to the log, never to an unauthenticated caller.
        logger.exception("healthz: the database did not answer")
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


@dataclass(frozen=True)
class QueueSummary:
    code: str
    label: str
    open: int  # at most NAV_COUNT_LIMIT
    capped: bool
    oldest: list[ExceptionCase]


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


def _queues(user: AbstractBaseUser | AnonymousUser) -> list[QueueSummary]:
    """The queues the person works, then their own cases: open counts and the oldest cases."""
    if not user.has_perm(WORK):
        return []
    worked = queues_of(user)
    counts = open_counts(user=user)
    oldest = oldest_open_cases(
        cases=permitted_cases(user, work=True), queues=worked, assignee=user, each=OLDEST_PER_QUEUE
    )
    labels = {**dict(Queue.choices), MINE: "Assigned to me"}
    order = [code for code in Queue.values if code in worked] + [MINE]
    return [
        QueueSummary(
            code=code,
            label=labels[code],
            open=min(counts.get(code, 0), NAV_COUNT_LIMIT),
            capped=counts.get(code, 0) > NAV_COUNT_LIMIT,
            oldest=oldest.get(code, []),
        )
        for code in order
    ]


def _late_orders(now: datetime) -> tuple[list[Order], bool]:
    """Open orders past their promise, the most recently late first (and whether there are more).

    Read backwards through ``order_open_by_promise`` (undelivered orders by promise) from now to
    ``LATE_WINDOW`` ago, stopping after ``LATE_ORDERS_SHOWN + 1``.
    """
    orders = (
        Order.objects.filter(late_condition(now), delivered_at__isnull=True, promised_at__lt=now)
        .filter(promised_at__gte=now - LATE_WINDOW)
        .exclude(stage=OrderStage.CANCELLED)
        .select_related("customer")
        .order_by("-promised_at", "-id")
    )
    found = list(orders[: LATE_ORDERS_SHOWN + 1])
    return found[:LATE_ORDERS_SHOWN], len(found) > LATE_ORDERS_SHOWN


def _feeds_in_trouble(now: datetime) -> list[FeedTrouble]:
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

    since = now - HEALTH_WINDOW
    newest = [
        InboundMessage.objects.filter(status=status, received_at__gt=since)
        .order_by("-received_at")
        .values_list("partner_id", "partner__name", "partner__code", "channel_id", "channel__name", "received_at")[
            :DEAD_LETTERS_READ
        ]
        for status in (InboundMessage.Status.DEAD, InboundMessage.Status.FAILED)
    ]
    dead: dict[tuple[int | None, int | None], list] = {}
    for partner_id, partner_name, partner_code, channel_id, channel_name, received_at in newest[0].union(
        newest[1], all=True
    ):
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


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """What needs me now: my queues, orders late against their promise, feeds in trouble.

    Each part shows only to people whose role may read it, and each is read with a LIMIT through
    an index, so the page costs the same however many cases, orders and messages there are.
    """
    user = request.user
    now = timezone.now()
    context: dict[str, object] = {"now": now, "queues": _queues(user), "amounts_hidden_for": amounts_hidden_for(user)}
    if user.has_perm("timeline.view_order"):
        context["late_orders"], context["more_late_orders"] = _late_orders(now)
        context["late_window_days"] = LATE_WINDOW.days
    if user.has_perm("ingest.view_inboundmessage"):
        context["feeds"] = _feeds_in_trouble(now)
        context["health_window_hours"] = int(HEALTH_WINDOW.total_seconds() // 3600)
    return render(request, "home.html", context)
