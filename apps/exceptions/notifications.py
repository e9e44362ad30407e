"""Email about cases: a daily digest per person, and an immediate email for critical cases.

A person's queues come from their role groups. Digest and critical emails go only to people
with an email address; critical emails only to those who opted in.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import chain

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from apps.exceptions.models import ExceptionCase, NotificationPreference, Queue, Severity
from apps.exceptions.roles import QUEUES_BY_ROLE
from apps.exceptions.selectors import amounts_hidden_for

DIGEST_PERIOD = timedelta(days=1)
DIGEST_LIMIT = 50


def people_by_queue(*, critical_only: bool = False) -> dict[str, list[AbstractBaseUser]]:
    """Who works each queue, among people with an email who want to hear about it."""
    wanted = (
        Q(notification_preference__critical_immediately=True)
        if critical_only
        else (Q(notification_preference__isnull=True) | Q(notification_preference__daily_digest=True))
    )
    users = (
        get_user_model()
        .objects.filter(wanted, is_active=True, groups__name__in=QUEUES_BY_ROLE)
        .exclude(email="")
        .prefetch_related("groups")
        .distinct()
    )
    queues: dict[str, list[AbstractBaseUser]] = defaultdict(list)
    for user in users:
        for group in user.groups.all():
            if group.name in QUEUES_BY_ROLE:
                queues[QUEUES_BY_ROLE[group.name]].append(user)
    return queues


def digest_send(*, now: datetime | None = None) -> int:
    """Email each person the new (last 24 h) and overdue open cases of their queues."""
    now = now or timezone.now()
    open_cases = ExceptionCase.objects.filter(status__in=ExceptionCase.OPEN_STATUSES).select_related("rule")
    by_queue = {
        queue: {
            "new": list(open_cases.filter(queue=queue, opened_at__gte=now - DIGEST_PERIOD)[:DIGEST_LIMIT]),
            "overdue": list(open_cases.filter(queue=queue, due_at__lt=now).order_by("due_at")[:DIGEST_LIMIT]),
        }
        for queue in Queue.values
    }
    emails = []
    recipients: dict[int, tuple[AbstractBaseUser, set[str]]] = {}
    for queue, users in people_by_queue().items():
        for user in users:
            recipients.setdefault(user.pk, (user, set()))[1].add(queue)
    for user, queues in recipients.values():
        sections = [
            (Queue(q).label, by_queue[q]) for q in sorted(queues) if by_queue[q]["new"] or by_queue[q]["overdue"]
        ]
        if sections:
            body = render_to_string("exceptions/email/digest.txt", {"user": user, "sections": sections, "now": now})
            emails.append(EmailMessage("Control Tower: your queues today", body, to=[user.email]))
    return _send(emails)


def critical_cases_notify(case_ids: Iterable[int]) -> int:
    """Email the people who opted in, for each critical case that just opened."""
    cases = list(
        ExceptionCase.objects.filter(pk__in=list(case_ids), severity=Severity.CRITICAL).select_related("rule", "order")
    )
    if not cases:
        return 0
    people = people_by_queue(critical_only=True)
    hidden = {user.pk: amounts_hidden_for(user) for user in chain.from_iterable(people.values())}
    emails = [
        EmailMessage(
            f"Critical: {case.summary}"[:150],
            render_to_string(
                "exceptions/email/critical.txt",
                {
                    "case": case,
                    "show_amount": case.subject_type not in hidden[user.pk],
                    "base_url": settings.PUBLIC_BASE_URL,
                },
            ),
            to=[user.email],
        )
        for case in cases
        for user in people.get(case.queue, [])
    ]
    return _send(emails)


def preference_for(user: AbstractBaseUser) -> NotificationPreference:
    return NotificationPreference.objects.get_or_create(user=user)[0]


def _send(emails: list[EmailMessage]) -> int:
    if not emails:
        return 0
    with get_connection() as connection:
        return connection.send_messages(emails) or 0
