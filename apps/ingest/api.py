"""Receivers over HTTP: raw documents, canonical events, and message status.

Receivers only authenticate, check size and shape, and store: a 2xx means "stored". Parsing
happens in a worker (canonical events are validated up front, since a 400 that names the field
is the clearest answer a sender can get).
"""

import json

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError as BadRequest
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.ingest.models import InboundMessage
from apps.ingest.parsers import known_formats
from apps.ingest.services import REPLAYABLE, MessageRejected, message_receive, message_scopes, messages_replay
from apps.partners.authentication import IsPartnerOrPerson, IsPerson, PartnerPrincipal
from apps.partners.models import Channel, Partner, code_validator
from apps.timeline.events import CanonicalEvent, EventKey, EventSource, EventValidationError, parse_events
from apps.timeline.services import queue_for_events, scope_violations

CONTENT_TYPE_FORMATS = {
    "application/edi-x12": "x12",
    "application/x12": "x12",
    "application/edifact": "edifact",
    "application/edi-edifact": "edifact",
    "text/csv": "csv",
}


FORMAT_HELP = (
    "auto (the default: X12, EDIFACT, canonical JSON or an aggregator's JSON, by shape), x12, edifact, csv, "
    "json, json_mapping, or an aggregator: easypost, shipengine, aftership, shippo, sendcloud, easyship, karrio"
)


class DocumentFormatNegotiation(DefaultContentNegotiation):
    """In the ingest API ``?format=`` names the document's format, never the response's."""

    class settings:  # noqa: N801 - stands in for DRF's settings object, read for this one name
        URL_FORMAT_OVERRIDE = None


class MessageStatusSerializer(serializers.ModelSerializer):
    partner = serializers.CharField(source="partner.code", allow_null=True, default=None)
    channel = serializers.CharField(source="channel.code", allow_null=True, default=None)

    class Meta:
        model = InboundMessage
        fields = [
            "id",
            "partner",
            "channel",
            "source",
            "format",
            "size",
            "sha256",
            "received_at",
            "status",
            "attempts",
            "error",
            "warnings",
            "unmapped_codes",
            "events_count",
            "applied_count",
            "duplicate_count",
            "parked_count",
            "processed_at",
        ]


ACCEPTED = inline_serializer(
    "MessageAccepted",
    {
        "id": serializers.IntegerField(),
        "status": serializers.CharField(),
        "status_url": serializers.URLField(),
        "duplicate": serializers.BooleanField(),
    },
)


def acting_partner(request: Request, code: str | None) -> Partner:
    """A partner token writes only as its partner; a person with the permission names the partner.

    Either way what is sent stays within that partner's scopes: a person acting for a carrier
    sends what the carrier may send, no more.
    """
    if isinstance(request.user, PartnerPrincipal):
        partner = request.user.partner
        if code and code != partner.code:
            raise PermissionDenied(f"this token belongs to {partner.code}; it cannot write as {code}")
        return partner
    if not request.user.has_perm("ingest.post_inboundmessage"):
        raise PermissionDenied("sending messages for a partner needs the 'post inbound message' permission")
    if not code:
        raise BadRequest({"partner": ["Name the partner this message comes from."]})
    # A code no partner could have (a NUL in it, say) is not looked up: the database refuses some.
    partner = Partner.objects.filter(code=code).first() if code_validator.regex.match(code) else None
    if partner is None:
        raise BadRequest({"partner": [f"Unknown partner {code!r}."]})
    if not partner.active:
        raise PermissionDenied(f"partner {code} is inactive: nothing can be sent for it")
    return partner


def token_scopes(request: Request) -> list[str] | None:
    """What the caller's token allows, or None for a person (the channel's or kind's apply)."""
    if isinstance(request.user, PartnerPrincipal):
        return list(request.user.scopes)
    return None


def refused(reasons: dict[EventKey, str], events: list[CanonicalEvent]) -> Response:
    """403: the whole request is refused, each offending event named with the reason."""
    kinds = {event.key: event.kind.value for event in events}
    return Response(
        {
            "detail": f"{len(reasons)} event(s) are outside what this sender may send; nothing was stored.",
            "refused": [
                {"event_id": key.event_id, "kind": kinds.get(key), "reason": reason} for key, reason in reasons.items()
            ],
        },
        status=status.HTTP_403_FORBIDDEN,
    )


def named_channel(partner: Partner, code: str | None) -> Channel | None:
    if not code:
        return None
    channel = partner.channels.filter(code=code).first()
    if channel is None:
        raise BadRequest({"channel": [f"Partner {partner.code} has no channel {code!r}."]})
    if not channel.active:
        raise BadRequest({"channel": [f"Channel {partner.code}/{code} is not active."]})
    return channel


def accepted(request: Request, message: InboundMessage, created: bool) -> Response:
    return Response(
        {
            "id": message.pk,
            "status": message.status,
            "status_url": reverse("api-message", args=[message.pk], request=request),
            "duplicate": not created,
        },
        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
    )


def too_large(size: int) -> Response:
    limit = settings.INGEST_MAX_MESSAGE_BYTES
    return Response(
        {"detail": f"The message is {size:,} bytes; the limit is {limit:,} bytes.", "limit": limit},
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def declared_size(request: Request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class MessageCreateView(APIView):
    """Receive a raw document (X12, EDIFACT, CSV, JSON) as the request body, or as a ``file`` upload."""

    permission_classes = [IsPartnerOrPerson]
    content_negotiation_class = DocumentFormatNegotiation

    @extend_schema(
        operation_id="messages_create",
        request={"application/octet-stream": OpenApiTypes.BINARY, "multipart/form-data": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter("format", str, description=FORMAT_HELP),
            OpenApiParameter("partner", str, description="Partner code (staff only; a token is its partner)"),
            OpenApiParameter("channel", str, description="Channel code of the partner"),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={202: ACCEPTED, 200: ACCEPTED},
    )
    def post(self, request: Request) -> Response:
        if declared_size(request) > settings.INGEST_MAX_MESSAGE_BYTES:
            return too_large(declared_size(request))
        params = request.query_params
        body, filename, fields = self._payload(request)
        partner = acting_partner(request, fields.get("partner") or params.get("partner"))
        channel = named_channel(partner, fields.get("channel") or params.get("channel"))
        fmt = fields.get("format") or params.get("format") or self._format_from_content_type(request)
        if fmt != "auto" and fmt not in known_formats():
            raise BadRequest({"format": [f"Unknown format {fmt!r}; use auto or one of: {', '.join(known_formats())}"]})
        try:
            message, created = message_receive(
                body=body,
                source=InboundMessage.Source.API,
                partner=partner,
                channel=channel,
                format=fmt,
                idempotency_key=request.headers.get("Idempotency-Key"),
                filename=filename,
                content_type=request.content_type or "",
                scopes=token_scopes(request),
            )
        except MessageRejected as exc:
            raise BadRequest({"body": [str(exc)]}) from exc
        return accepted(request, message, created)

    @staticmethod
    def _payload(request: Request) -> tuple[bytes, str, dict[str, str]]:
        if request.content_type.startswith("multipart/form-data"):
            upload = request.FILES.get("file")
            if upload is None:
                raise BadRequest({"file": ["Attach the document as a 'file' field."]})
            if upload.size > settings.INGEST_MAX_MESSAGE_BYTES:
                raise BadRequest({"file": [f"The file is {upload.size:,} bytes; the limit is exceeded."]})
            fields = {key: request.POST.get(key, "") for key in ("format", "partner", "channel")}
            return upload.read(), upload.name or "", fields
        return request.body, "", {}

    @staticmethod
    def _format_from_content_type(request: Request) -> str:
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        return CONTENT_TYPE_FORMATS.get(content_type, "auto")


class EventCreateView(APIView):
    """Receive canonical events (schema version 1): one event, a list, or ``{"events": [...]}``."""

    permission_classes = [IsPartnerOrPerson]

    @extend_schema(
        operation_id="events_create",
        request=OpenApiTypes.OBJECT,
        parameters=[
            OpenApiParameter("partner", str, description="Partner code (staff only)"),
            OpenApiParameter("channel", str, description="Channel code of the partner"),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={202: ACCEPTED, 200: ACCEPTED},
    )
    def post(self, request: Request) -> Response:
        if declared_size(request) > settings.INGEST_MAX_MESSAGE_BYTES:
            return too_large(declared_size(request))
        partner = acting_partner(request, request.query_params.get("partner"))
        channel = named_channel(partner, request.query_params.get("channel"))
        body = request.body
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest({"body": [f"Not valid JSON: {exc}"]}) from exc
        scopes = message_scopes(partner, channel, token_scopes(request))
        try:
            events = parse_events(payload, source=EventSource(partner=partner.code, scopes=tuple(scopes)))
        except EventValidationError as exc:
            return Response({"errors": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
        reasons = scope_violations(events)
        if reasons:
            return refused(reasons, events)
        try:
            message, created = message_receive(
                body=body,
                source=InboundMessage.Source.API,
                partner=partner,
                channel=channel,
                format="json",
                idempotency_key=request.headers.get("Idempotency-Key"),
                content_type="application/json",
                priority=queue_for_events(events),
                scopes=token_scopes(request),
            )
        except MessageRejected as exc:
            raise BadRequest({"body": [str(exc)]}) from exc
        return accepted(request, message, created)


class MessageDetailView(APIView):
    """A message's processing status: what it became, its warnings, or why it failed."""

    permission_classes = [IsPartnerOrPerson]

    @extend_schema(operation_id="messages_retrieve", responses=MessageStatusSerializer)
    def get(self, request: Request, pk: int) -> Response:
        messages = InboundMessage.objects.select_related("partner", "channel").defer("body")
        if isinstance(request.user, PartnerPrincipal):
            messages = messages.filter(partner=request.user.partner)
        elif not request.user.has_perm("ingest.view_inboundmessage"):
            raise PermissionDenied("Reading messages needs a role that grants ingest.view_inboundmessage.")
        return Response(MessageStatusSerializer(get_object_or_404(messages, pk=pk)).data)


class CanReplay(IsPerson):
    """Replaying dead letters is for people with the replay permission (integration admins)."""

    def has_permission(self, request: Request, view: object) -> bool:
        return super().has_permission(request, view) and request.user.has_perm("ingest.replay_inboundmessage")


class ReplayInput(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=10_000)
    all = serializers.BooleanField(default=False, help_text="Replay every dead letter (of `partner`, if given).")
    partner = serializers.CharField(required=False)

    def validate(self, data: dict) -> dict:
        if not data.get("ids") and not data["all"]:
            raise serializers.ValidationError("Give `ids`, or `all: true`.")
        return data


class MessageReplayView(APIView):
    """Queue dead letters (failed, dead or partially processed messages) again after a fix."""

    permission_classes = [CanReplay]

    @extend_schema(
        operation_id="messages_replay",
        request=ReplayInput,
        responses=inline_serializer("Replayed", {"replayed": serializers.IntegerField()}),
    )
    def post(self, request: Request) -> Response:
        data = ReplayInput(data=request.data)
        data.is_valid(raise_exception=True)
        messages = InboundMessage.objects.filter(status__in=REPLAYABLE)
        if data.validated_data.get("ids"):
            messages = messages.filter(pk__in=data.validated_data["ids"])
        if data.validated_data.get("partner"):
            messages = messages.filter(partner__code=data.validated_data["partner"])
        return Response({"replayed": messages_replay(messages.values_list("pk", flat=True))})
