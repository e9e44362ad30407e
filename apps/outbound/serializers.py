"""Shapes of ``/api/v1/subscriptions/`` and ``/api/v1/deliveries/replay/``: input apart from output.

Input is validated by the same rules as the admin (``Subscription.clean``), so a 400 names the
field exactly as the admin form would.
"""

import copy
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.outbound.forms import MAX_ATTEMPTS_LIMIT, TIMEOUT_LIMIT_SECONDS
from apps.outbound.models import MAX_BATCH_SIZE, Delivery, Subscription
from apps.outbound.selectors import waiting_for
from apps.partners.models import Channel, Partner
from apps.timeline.serializers import OffsetDateTimeField

CODE_MAX_LENGTH = 40


class SubscriptionInput(serializers.Serializer):
    """Input of ``POST`` (every field but ``partner`` and ``name`` optional), ``PUT`` and ``PATCH``."""

    partner = serializers.CharField(max_length=CODE_MAX_LENGTH, help_text="The receiving partner's code.")
    name = serializers.CharField(max_length=200)
    channel = serializers.CharField(
        max_length=CODE_MAX_LENGTH,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="A channel code of the partner; without a target URL, documents go to its outbox folder.",
    )
    target_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    event_kinds = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        max_length=100,
        help_text='Event kinds or patterns: "shipment.delivered", "shipment.*" or "*".',
    )
    format = serializers.CharField(required=False, help_text="json (canonical JSON), x12 or edifact.")
    acknowledgments = serializers.BooleanField(
        required=False,
        help_text="Send the partner's acknowledgments here: 997s (x12) or CONTRL (edifact).",
    )
    active = serializers.BooleanField(required=False)
    customers = serializers.ListField(
        child=serializers.CharField(max_length=CODE_MAX_LENGTH),
        required=False,
        max_length=1000,
        help_text="Only these customers' orders (partner codes); empty: every customer.",
    )
    regions = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100)
    ordered = serializers.BooleanField(
        required=False, help_text="Deliver one order's events in sequence: a later one waits for the earlier."
    )
    legacy_signature = serializers.BooleanField(
        required=False,
        help_text="Also send X-Timestamp and X-Signature, for a receiver that does not verify Standard Webhooks yet.",
    )
    batch_size = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        help_text='Events per request (canonical JSON to a URL, not ordered), as {"events": [...]}; 1: one each.',
    )
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ATTEMPTS_LIMIT)
    timeout_seconds = serializers.IntegerField(required=False, min_value=1, max_value=TIMEOUT_LIMIT_SECONDS)

    def validate_format(self, value: str) -> str:
        if value not in Subscription.Format.values:
            raise serializers.ValidationError(f"Choose one of: {', '.join(Subscription.Format.values)}.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: Subscription | None = self.instance
        partner = _partner(attrs["partner"]) if "partner" in attrs else instance.partner
        attrs["partner"] = partner
        if "channel" in attrs:
            attrs["channel"] = _channel(partner, attrs["channel"])
        elif instance is not None and instance.channel_id and instance.partner_id != partner.pk:
            raise serializers.ValidationError({"channel": ["Name one of the new partner's channels (or null)."]})
        if "customers" in attrs:
            attrs["customers"] = _customers(attrs["customers"])
        _check_like_the_admin(instance, attrs)
        return attrs


def _partner(code: str) -> Partner:
    partner = Partner.objects.filter(code=code).first()
    if partner is None:
        raise serializers.ValidationError({"partner": [f"Unknown partner {code!r}."]})
    return partner


def _channel(partner: Partner, code: str | None) -> Channel | None:
    if not code:
        return None
    channel = partner.channels.filter(code=code).first()
    if channel is None:
        raise serializers.ValidationError({"channel": [f"Partner {partner.code} has no channel {code!r}."]})
    return channel


def _customers(codes: list[str]) -> list[Partner]:
    found = {p.code: p for p in Partner.objects.filter(code__in=codes)}
    unknown = [code for code in codes if code not in found]
    if unknown:
        raise serializers.ValidationError({"customers": [f"Unknown partner(s): {', '.join(unknown)}."]})
    others = [code for code in codes if found[code].kind != Partner.Kind.CUSTOMER]
    if others:
        raise serializers.ValidationError({"customers": [f"Not customers: {', '.join(others)}."]})
    return list(dict.fromkeys(found[code] for code in codes))


def _check_like_the_admin(instance: Subscription | None, attrs: dict[str, Any]) -> None:
    """Run ``Subscription.clean`` on the subscription as it would be saved; its errors become a 400."""
    candidate = copy.copy(instance) if instance is not None else Subscription()
    for name, value in attrs.items():
        if name != "customers":
            setattr(candidate, name, value)
    try:
        candidate.clean()
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.message_dict) from error


class CircuitSerializer(serializers.Serializer):
    state = serializers.CharField(help_text="closed, open or half_open (one probe in flight).")
    failures = serializers.IntegerField(help_text="Consecutive failures.")
    opened_at = OffsetDateTimeField(allow_null=True)
    retry_at = OffsetDateTimeField(allow_null=True, help_text="When an open breaker lets a probe through.")
    last_error = serializers.CharField()


CLOSED_CIRCUIT = {"state": "closed", "failures": 0, "opened_at": None, "retry_at": None, "last_error": ""}


class DeliveryCountsSerializer(serializers.Serializer):
    """Deliveries by status, now (read from the ``count_<status>`` annotations of the selector)."""

    pending = serializers.IntegerField(source="count_pending")
    sending = serializers.IntegerField(source="count_sending")
    delivered = serializers.IntegerField(source="count_delivered")
    dead = serializers.IntegerField(source="count_dead")


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    partner = serializers.CharField(source="partner.code")
    name = serializers.CharField()
    channel = serializers.CharField(source="channel.code", default=None, allow_null=True)
    target_url = serializers.CharField()
    event_kinds = serializers.ListField(child=serializers.CharField())
    format = serializers.CharField(help_text="json or x12.")
    acknowledgments = serializers.BooleanField()
    active = serializers.BooleanField()
    customers = serializers.SerializerMethodField()
    regions = serializers.ListField(child=serializers.CharField())
    ordered = serializers.BooleanField()
    legacy_signature = serializers.BooleanField()
    batch_size = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    timeout_seconds = serializers.IntegerField()
    circuit = serializers.SerializerMethodField()
    deliveries = DeliveryCountsSerializer(source="*")
    created_at = OffsetDateTimeField()
    updated_at = OffsetDateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_customers(self, subscription: Subscription) -> list[str]:
        """Partner codes of the customers it is limited to (prefetched by the view)."""
        return [customer.code for customer in subscription.customers.all()]

    @extend_schema_field(CircuitSerializer)
    def get_circuit(self, subscription: Subscription) -> dict[str, Any]:
        """The breaker of the subscription's endpoint; closed before anything was sent."""
        if subscription.endpoint is None:
            return CLOSED_CIRCUIT
        return CircuitSerializer(subscription.endpoint).data


class SubscriptionCreatedSerializer(SubscriptionSerializer):
    secret = serializers.CharField(
        help_text="Signs every delivery (Standard Webhooks, whsec_...; X-Signature when kept); shown on creation only."
    )


class SecretSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    secret = serializers.CharField(
        help_text="The new signing secret. webhook-signature carries the old one's signature too for the grace "
        "period; X-Signature changes at once."
    )


class DeliveryQuery(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["pending", "sending", "delivered", "dead"], required=False, help_text="Only deliveries in this status."
    )


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="pending, sending, delivered or dead.")
    kind = serializers.CharField(help_text="The event kind, or the acknowledgment (997 or CONTRL).")
    event_id = serializers.CharField(source="event.event_id", default=None, allow_null=True)
    order = serializers.CharField(source="order.number", default=None, allow_null=True)
    idempotency_key = serializers.UUIDField()
    attempts = serializers.IntegerField(help_text="Attempts since it was created or replayed.")
    last_status_code = serializers.IntegerField(allow_null=True)
    last_latency_ms = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    waiting_for = serializers.SerializerMethodField(
        help_text="For an ordered subscription: the earlier, undelivered delivery of the same order it waits for."
    )
    next_attempt_at = OffsetDateTimeField(allow_null=True)
    created_at = OffsetDateTimeField()
    delivered_at = OffsetDateTimeField(allow_null=True)
    dead_at = OffsetDateTimeField(allow_null=True)

    def get_waiting_for(self, delivery: Delivery) -> int | None:
        return waiting_for(delivery)


class DeliveryReplayInput(serializers.Serializer):
    """Chosen ``ids``, or ``all: true`` with a ``subscription``: every dead delivery of it."""

    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=10_000)
    subscription = serializers.IntegerField(required=False, min_value=1)
    all = serializers.BooleanField(default=False, help_text="Replay every dead delivery of `subscription`.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["all"] and not attrs.get("subscription"):
            raise serializers.ValidationError(
                {"subscription": ["Name the subscription whose dead deliveries to replay."]}
            )
        if not attrs.get("ids") and not attrs["all"]:
            raise serializers.ValidationError("Give `ids`, or `all: true` with a `subscription`.")
        if attrs.get("subscription") and not Subscription.objects.filter(pk=attrs["subscription"]).exists():
            raise serializers.ValidationError({"subscription": [f"No subscription {attrs['subscription']}."]})
        return attrs


class DeliveriesReplayedSerializer(serializers.Serializer):
    replayed = serializers.IntegerField(help_text="How many dead deliveries were queued again.")
