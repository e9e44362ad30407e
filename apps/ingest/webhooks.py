"""Signed webhooks: ``POST /hooks/<partner>/<channel>/``.

The sender signs ``timestamp + "." + body`` with HMAC-SHA256 and the channel's secret, and sends
``X-Timestamp: <unix seconds>`` and ``X-Signature: sha256=<hex>``. We refuse a wrong signature,
a timestamp more than the tolerance away from now, and a signature we have already seen. After a
rotation, a signature made with the previous secret verifies until the grace period ends.

A channel whose signature scheme is Shopify's verifies Shopify's own header instead:
``X-Shopify-Hmac-Sha256``, the base64 HMAC-SHA256 of the raw body with the app's secret (the
channel's webhook secret). Shopify signs no timestamp and sends a retry with the same body,
signature and ``X-Shopify-Webhook-Id``, so nothing is refused as a replay there: the webhook id
becomes the message's idempotency key, and a retry (or a replay) is answered with the message
already stored. Only the topics the Shopify parser maps are taken.

A channel whose scheme is Standard Webhooks verifies ``webhook-signature`` (any of its ``v1``
signatures, with the current secret or the previous one during its grace period) over
``webhook-id.webhook-timestamp.body``, refuses a timestamp outside the tolerance, and takes
``webhook-id`` as the message's idempotency key: a retry is answered with the message stored.
"""

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.views.decorators.debug import sensitive_variables

from apps.partners import standard_webhooks
from apps.partners.credentials import webhook_secrets_accepted
from apps.partners.models import Channel

# (partner code, channel code) -> (monotonic expiry, the channel or None); see inbound_channel.
_channels: dict[tuple[str, str], tuple[float, Channel | None]] = {}
CACHED_CHANNELS_MAX = 10_000  # unknown names are kept too; a flood of made-up URLs stays bounded


def inbound_channel(partner: str, code: str, *, fresh: bool = False) -> Channel | None:
    """The active inbound channel of an active partner that a webhook URL names, or None.

    Kept for ``WEBHOOK_CHANNEL_CACHE_SECONDS`` in this process (unless ``fresh``): at a thousand
    webhooks a second a channel costs one query a second, and a change reaches every process
    within that time.
    """
    now = time.monotonic()
    cached = _channels.get((partner, code))
    if cached is not None and cached[0] > now and not fresh:
        return cached[1]
    channel = (
        Channel.objects.select_related("partner")
        .filter(
            partner__code=partner, partner__active=True, code=code, active=True, direction=Channel.Direction.INBOUND
        )
        .first()
    )
    if len(_channels) >= CACHED_CHANNELS_MAX:
        _channels.clear()
    _channels[(partner, code)] = (now + settings.WEBHOOK_CHANNEL_CACHE_SECONDS, channel)
    return channel


def forget_channels(**kwargs: object) -> None:
    """A partner or channel changed here: look them up afresh."""
    _channels.clear()


class SignatureRejected(ValueError):
    """The request is not provably from the partner; the message says which check failed."""


class WebhookRefused(ValueError):
    """The request is signed, but holds nothing this channel reads (such as a Shopify topic we do
    not map); the message says what it does read."""


# Shopify topics the ``shopify`` parser maps (apps.ingest.parsers.shopify).
SHOPIFY_TOPICS = ("orders/create", "orders/cancelled", "fulfillments/create", "fulfillments/update")
MAX_WEBHOOK_ID_LENGTH = 200  # InboundMessage.idempotency_key


@dataclass(frozen=True)
class Verified:
    """What the signature scheme says about a verified request: the format of its body, and the
    id the sender gives each delivery (the same on its retries), if any."""

    format: str = "auto"
    delivery_id: str | None = None


@sensitive_variables()
def verify_webhook(
    *,
    channel: Channel,
    body: bytes,
    timestamp: str,
    signature: str,
    headers: Mapping[str, str],
    now: float | None = None,
) -> Verified:
    """Verify a request by its channel's signature scheme. ``timestamp`` and ``signature`` are our
    scheme's headers; ``headers`` all the request's headers, names in lower case. Raises
    SignatureRejected or WebhookRefused."""
    if channel.signature_scheme == Channel.SignatureScheme.SHOPIFY:
        return verify_shopify(channel=channel, body=body, headers=headers, now=now)
    if channel.signature_scheme == Channel.SignatureScheme.STANDARD:
        return verify_standard(channel=channel, body=body, headers=headers, now=now)
    verify_signature(channel=channel, timestamp=timestamp, signature=signature, body=body, now=now)
    return Verified()


@sensitive_variables("secret")
def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@sensitive_variables()
def verify_signature(
    *, channel: Channel, timestamp: str, signature: str, body: bytes, now: float | None = None
) -> None:
    """Raise SignatureRejected unless the request is signed, fresh and not seen before."""
    now = time.time() if now is None else now
    secrets = webhook_secrets_accepted(channel, now=datetime.fromtimestamp(now, tz=UTC))
    if not secrets:
        raise SignatureRejected("this channel has no webhook secret configured")
    if not timestamp or not signature:
        raise SignatureRejected("X-Timestamp and X-Signature headers are required")
    try:
        sent_at = int(timestamp)
    except ValueError as exc:
        raise SignatureRejected("X-Timestamp must be unix seconds") from exc
    tolerance = settings.WEBHOOK_TOLERANCE_SECONDS
    if abs(now - sent_at) > tolerance:
        raise SignatureRejected(f"X-Timestamp is more than {tolerance} seconds away from now")
    given = signature.strip().encode()
    if not any(hmac.compare_digest(signature_for(secret, timestamp, body).encode(), given) for secret in secrets):
        raise SignatureRejected("X-Signature does not match the body")
    # Remember the signature for as long as its timestamp would be accepted: a replay is refused.
    if not cache.add(f"webhook-signature:{channel.pk}:{signature.strip()}", 1, timeout=2 * tolerance):
        raise SignatureRejected("this signature was already used (replayed request)")


@sensitive_variables("secret")
def shopify_signature_for(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@sensitive_variables()
def verify_shopify(*, channel: Channel, body: bytes, headers: Mapping[str, str], now: float | None = None) -> Verified:
    """Raise SignatureRejected unless Shopify's HMAC header matches the body, WebhookRefused unless
    its topic is one we map; the webhook id identifies the delivery and its retries."""
    now = time.time() if now is None else now
    secrets = webhook_secrets_accepted(channel, now=datetime.fromtimestamp(now, tz=UTC))
    if not secrets:
        raise SignatureRejected("this channel has no webhook secret configured")
    given = headers.get("x-shopify-hmac-sha256", "").strip().encode()
    if not given:
        raise SignatureRejected("the X-Shopify-Hmac-Sha256 header is required")
    if not any(hmac.compare_digest(shopify_signature_for(secret, body).encode(), given) for secret in secrets):
        raise SignatureRejected("X-Shopify-Hmac-Sha256 does not match the body")
    topic = headers.get("x-shopify-topic", "").strip()
    if topic not in SHOPIFY_TOPICS:
        named = f"topic {topic[:100]!r} is" if topic else "a webhook without X-Shopify-Topic is"
        raise WebhookRefused(f"{named} not read here; this channel reads {', '.join(SHOPIFY_TOPICS)}")
    webhook_id = headers.get("x-shopify-webhook-id", "").strip()
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        raise WebhookRefused(f"X-Shopify-Webhook-Id is longer than {MAX_WEBHOOK_ID_LENGTH} characters")
    return Verified(format="shopify", delivery_id=webhook_id or None)


@sensitive_variables()
def verify_standard(*, channel: Channel, body: bytes, headers: Mapping[str, str], now: float | None = None) -> Verified:
    """Raise SignatureRejected unless a Standard Webhooks signature matches, fresh; the webhook id
    identifies the delivery and its retries."""
    now = time.time() if now is None else now
    secrets = webhook_secrets_accepted(channel, now=datetime.fromtimestamp(now, tz=UTC))
    if not secrets:
        raise SignatureRejected("this channel has no webhook secret configured")
    webhook_id = headers.get("webhook-id", "").strip()
    timestamp = headers.get("webhook-timestamp", "").strip()
    signature = headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signature.strip()):
        raise SignatureRejected("webhook-id, webhook-timestamp and webhook-signature headers are required")
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        raise WebhookRefused(f"webhook-id is longer than {MAX_WEBHOOK_ID_LENGTH} characters")
    if not timestamp.isdigit():
        raise SignatureRejected("webhook-timestamp must be unix seconds")
    tolerance = settings.WEBHOOK_TOLERANCE_SECONDS
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureRejected(f"webhook-timestamp is more than {tolerance} seconds away from now")
    try:
        keys = [standard_webhooks.signing_key(secret) for secret in secrets]
    except ValueError as exc:
        raise SignatureRejected(f"this channel's secret cannot verify Standard Webhooks ({exc}): rotate it") from exc
    if not standard_webhooks.signature_matches(
        keys, message_id=webhook_id, timestamp=int(timestamp), body=body, header=signature
    ):
        raise SignatureRejected("webhook-signature does not match the body")
    return Verified(delivery_id=webhook_id)
