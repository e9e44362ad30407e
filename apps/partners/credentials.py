"""Secrets held for partners: webhook secrets (we verify with them) and poll headers (we send them).

They are write-only. A secret is generated here or typed once by staff, shown once to whoever set
it, and only ever displayed masked afterwards (``secret_mask``). A rotated webhook secret keeps
verifying for ``SECRET_ROTATION_GRACE_SECONDS``, so a partner can switch without losing a webhook.
"""

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.partners import standard_webhooks
from apps.partners.models import Channel

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a public marker, not a secret
# Secrets shorter than this are masked without any of their characters.
MASK_MIN_LENGTH = 20
MASK_VISIBLE = 4
# RFC 9110 token characters for a header name.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def webhook_secret_generate() -> str:
    """``whsec_`` and 32 random bytes in base64: a key for our signatures and Standard Webhooks' alike."""
    return standard_webhooks.secret_generate()


def secret_mask(value: str) -> str:
    """``whsec_…Xy4Q``: enough to tell two secrets apart, never enough to use one."""
    if not value:
        return "not set"
    if len(value) < MASK_MIN_LENGTH:
        return "set"
    prefix = WEBHOOK_SECRET_PREFIX if value.startswith(WEBHOOK_SECRET_PREFIX) else ""
    return f"{prefix}…{value[-MASK_VISIBLE:]}"


def rotation_grace() -> timedelta:
    return timedelta(seconds=settings.SECRET_ROTATION_GRACE_SECONDS)


@sensitive_variables()
@transaction.atomic
def channel_webhook_secret_set(*, channel: Channel, secret: str = "", now: datetime | None = None) -> str:
    """Give ``channel`` a new webhook secret and return it: ``secret`` when the partner chose one,
    else a generated one. The secret it replaces keeps verifying for the grace period; a second
    rotation within that period ends the first one's grace."""
    now = now or timezone.now()
    current = Channel.objects.select_for_update().values_list("webhook_secret", flat=True).get(pk=channel.pk)
    new = secret or webhook_secret_generate()
    kept = current if current and current != new else ""
    changes = {
        "webhook_secret": new,
        "webhook_secret_previous": kept,
        "webhook_secret_previous_until": now + rotation_grace() if kept else None,
        "webhook_secret_rotated_at": now,
    }
    Channel.objects.filter(pk=channel.pk).update(**changes, updated_at=now)
    for name, value in changes.items():
        setattr(channel, name, value)
    return new


def webhook_secrets_accepted(channel: Channel, *, now: datetime) -> list[str]:
    """The secrets a webhook to ``channel`` may be signed with at ``now``: the current one, and
    the previous one until its grace period ends."""
    accepted = [channel.webhook_secret] if channel.webhook_secret else []
    until = channel.webhook_secret_previous_until
    if channel.webhook_secret_previous and until is not None and now < until:
        accepted.append(channel.webhook_secret_previous)
    return accepted


@sensitive_variables()
def channel_poll_headers_set(*, channel: Channel, headers: dict[str, str]) -> None:
    """Replace the headers a tracking pull sends (an empty dict removes them)."""
    Channel.objects.filter(pk=channel.pk).update(poll_headers=headers, updated_at=timezone.now())
    channel.poll_headers = headers


@sensitive_variables()
def poll_headers_parse(text: str) -> dict[str, str]:
    """``Name: value`` lines into headers; raises ValueError naming the first bad line by number
    (never by content, which may be a key)."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not (colon and HEADER_NAME.match(name) and value and value.isascii() and value.isprintable()):
            raise ValueError(f"line {number}: write each header as Name: value")
        headers[name] = value
    return headers


def poll_headers_masked(headers: object) -> str:
    """Header names with masked values, such as ``Authorization: …Q2x9; X-Client: set``."""
    if not isinstance(headers, dict) or not headers:
        return "none"
    return "; ".join(f"{name}: {secret_mask(str(value))}" for name, value in sorted(headers.items()))
