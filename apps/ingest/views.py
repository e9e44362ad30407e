from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.ingest.models import InboundMessage
from apps.ingest.services import MessageRejected, message_receive
from apps.ingest.webhooks import SignatureRejected, inbound_channel, verify_signature


@csrf_exempt
@require_POST
def webhook(request: HttpRequest, partner: str, channel: str) -> JsonResponse:
    """Store a signed webhook from a partner's channel; 202 means stored, parsing comes later."""
    target = inbound_channel(partner, channel)
    if target is None:
        return JsonResponse({"detail": f"No active inbound channel {partner}/{channel}."}, status=404)
    size = int(request.META.get("CONTENT_LENGTH") or 0)
    if size > settings.INGEST_MAX_MESSAGE_BYTES:
        return JsonResponse({"detail": f"The body is {size:,} bytes; the limit is exceeded."}, status=413)
    body = request.body
    timestamp, signature = request.headers.get("X-Timestamp", ""), request.headers.get("X-Signature", "")
    try:
        try:
            verify_signature(channel=target, timestamp=timestamp, signature=signature, body=body)
        except SignatureRejected:
            # The secret may have been rotated since this process looked the channel up.
            target = inbound_channel(partner, channel, fresh=True)
            if target is None:
                return JsonResponse({"detail": f"No active inbound channel {partner}/{channel}."}, status=404)
            verify_signature(channel=target, timestamp=timestamp, signature=signature, body=body)
    except SignatureRejected as exc:
        return JsonResponse({"detail": str(exc)}, status=401)
    try:
        message, created = message_receive(
            body=body,
            source=InboundMessage.Source.WEBHOOK,
            partner=target.partner,
            channel=target,
            idempotency_key=request.headers.get("Idempotency-Key"),
            content_type=request.content_type or "",
        )
    except MessageRejected as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    status_url = request.build_absolute_uri(reverse("api-message", args=[message.pk]))
    payload = {"id": message.pk, "status": message.status, "status_url": status_url, "duplicate": not created}
    return JsonResponse(payload, status=202 if created else 200)
